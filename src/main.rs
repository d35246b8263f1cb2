//! The `deepvue-rotator` binary: a thin shell over [`deepvue_rotator::cli`].

fn main() -> std::process::ExitCode {
    deepvue_rotator::cli::main()
}
