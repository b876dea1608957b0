//! The `signet` binary: parses flags and hands over to [`signet::cli`].

fn main() -> std::process::ExitCode {
    signet::cli::main()
}
