use clap::Parser;

// Write and replication paths allocate many short-lived buffers; mimalloc keeps them in
// thread-local pools instead of glibc's mmap/munmap churn (measured with `arka bench write`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    arka::cli::init_tracing();
    let cli = arka::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("arka")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("arka: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(arka::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("arka: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
