// model/adapter_main.cpp: `samda-adapter`, the adapter commands as a program of their own (for
// machines that build model/ alone, and for deploy/train-demo.sh before `samda adapter` exists).
#include "model.h"

int main(int argc, char **argv) { return samda_adapter_cli_main(argc, argv); }
