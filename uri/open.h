// Opening and creating devices by name: parses the URI, opens the protocol
// backend, probes or applies the format, and returns the top of the stack.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "engine/layer.h"
#include "engine/loop.h"
#include "engine/result.h"
#include "uri/uri.h"

namespace coblk {

struct OpenOptions {
    std::string format;          // "raw", ...; the protocol's name ("file", ...): no
                                 // format layer; empty: probe
    bool read_only = false;
    std::string cache;           // "none" | "writeback"; empty: the URI's or writeback
    // -o style options: protocol keys (cache, locking, size, ...) go to the
    // backend, format keys (offset, size for raw) to the format. A key that
    // neither takes is refused.
    uri::Options options;
};

// Opens the device named by `name` on `loop`. Fails with a message naming
// the URI and what is wrong. Loop thread.
Task<Result<std::unique_ptr<Layer>>> open_device(Loop& loop, std::string_view name,
                                                  const OpenOptions& o);

// Opens only the protocol backend (no format layer). Loop thread.
Task<Result<std::unique_ptr<Layer>>> open_protocol(Loop& loop, const uri::Spec& spec,
                                                   const OpenOptions& o);

// The name a base reference `base` stored in `image` stands for: a relative
// path is relative to the directory of the image (on the same gluster
// volume for an image there); absolute paths and URIs are as they are.
// Any thread.
std::string resolve_base_name(std::string_view image, const std::string& base);

struct CreateOptions {
    std::string format = "raw";
    uint64_t size = 0;
    uri::Options options;        // format options (-o)
};

// Creates an image of `size` bytes at `name`: a new or truncated file, or,
// for a device that cannot be created (host_device, null, memory), a check
// that it is at least `size` bytes. Fails naming the culprit. Loop thread.
Task<Result<void>> create_image(Loop& loop, std::string_view name, const CreateOptions& o);

} // namespace coblk
