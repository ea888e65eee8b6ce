use std::process::ExitCode;

// Every request allocates and frees many small buffers (rows, strings, HTML); the system
// allocator spent about 12 % of the record view's samples in malloc/free (perf record -g).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    portal::cli::run().await
}
