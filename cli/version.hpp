// What this build of tlsrelay is: the version from CMake's project() and the
// git commit it was built from ("unknown" when built outside a checkout).
#pragma once

#include <string>

namespace tlsrelay::cli {

const char* version();
const char* commit();
// "tlsrelay <version> (<commit>)": what `--version` prints, on every subcommand.
std::string version_line();

}  // namespace tlsrelay::cli
