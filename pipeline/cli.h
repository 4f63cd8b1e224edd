// The persoflow command line: builds the CLI11 application, runs the chosen
// command, maps errors to exit codes (pipeline/exit_codes.h).
#pragma once

namespace persoflow::pipeline {

int run_cli(int argc, char** argv);

}  // namespace persoflow::pipeline
