// libFuzzer target: the URI and option parsers (uri::parse, parse_size,
// parse_bool) on arbitrary text. Must never crash or hang; an accepted
// name must say which protocol it is, and a refused one why.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "uri/uri.h"

using namespace coblk;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto spec = uri::parse(text);
    if (spec) {
        if (spec->text != text)
            std::abort();   // the Spec must remember what it was parsed from
        if (spec->protocol == uri::Protocol::Gluster && spec->gluster.volume.empty())
            std::abort();   // a gluster Spec always names a volume
        if (spec->protocol == uri::Protocol::Rbd &&
            (spec->rbd.pool.empty() || spec->rbd.image.empty()))
            std::abort();   // an rbd Spec always names a pool and an image
    } else if (spec.error().message.empty()) {
        std::abort();       // a refusal says why
    }
    (void)uri::parse_size(text, "size");
    (void)uri::parse_bool(text, "flag");
    return 0;
}
