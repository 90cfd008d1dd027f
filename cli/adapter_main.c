/* samda-adapter: `samda adapter`'s commands as a program of their own, for a machine that builds
 * model/ alone (model/CMakeLists.txt builds it there from this file and cli_adapter.c) and for
 * scripts that want no DICOM (deploy/train-demo.sh, tests/bench/bench_adapt.sh). No --dicom here. */
#include "cli.h"

int main(int argc, char **argv) { return cli_adapter_main(argc, argv); }
