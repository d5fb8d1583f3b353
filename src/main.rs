//! The `tollgate` binary: parse the command line, load settings, run.

/// mimalloc rather than glibc's malloc: under many sessions it holds less memory and takes less
/// CPU (BENCHMARKS.md, "the allocator"). An application that mounts tollgate's router chooses
/// its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tollgate::cli::main()
}
