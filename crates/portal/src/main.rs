use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    portal::cli::run().await
}
