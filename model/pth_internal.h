/* model/ internal: what the .pth reader (pth_reader.cpp) and writer (pth_writer.cpp) share.
 * Never included outside model/. */
#ifndef SAMDA_MODEL_PTH_INTERNAL_H
#define SAMDA_MODEL_PTH_INTERNAL_H

#include <sstream>
#include <string>

#include "pth_reader.h"

namespace samda {
namespace pth {

/** Concatenate anything streamable into a string (for error messages). */
template <typename... Args> inline std::string cat(Args &&...args)
{
    std::ostringstream os;
    (os << ... << args);
    return os.str();
}

/** Most dimensions a tensor may have, read or written. */
constexpr size_t kMaxDims = 64;

/** Printable rendering of untrusted bytes for error messages (no control characters, at most max
 *  bytes shown, then "..."). */
std::string printable(const std::string &s, size_t max = 80);

} // namespace pth
} // namespace samda

#endif
