// The file operations FVD snapshots need beside an image (FvdSiblings),
// for the protocols that have them: local files.
#pragma once

#include <memory>
#include <string>

#include "engine/loop.h"
#include "formats/fvd.h"
#include "uri/open.h"
#include "uri/uri.h"

namespace coblk {

// The siblings of the image `spec` names, opened with `o` and the protocol
// options `proto_opts` (new siblings get the same cache mode and locking).
// On a protocol without them, supported() fails naming it. Loop thread.
std::shared_ptr<FvdSiblings> make_fvd_siblings(Loop& loop, const uri::Spec& spec,
                                               const OpenOptions& o,
                                               const uri::Options& proto_opts);

} // namespace coblk
