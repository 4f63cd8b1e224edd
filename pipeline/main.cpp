#include "pipeline/cli.h"

int main(int argc, char** argv) { return persoflow::pipeline::run_cli(argc, argv); }
