//! The `tollgate` binary: parse the command line, load settings, run.

fn main() -> std::process::ExitCode {
    tollgate::cli::main()
}
