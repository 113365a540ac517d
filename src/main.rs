fn main() -> std::process::ExitCode {
    millwright::cli::main()
}
