//! `petl serve`.

use crate::args::ServeArgs;
use crate::commands::load_base;
use anyhow::{Context, Result};
use petl_serve::{shutdown_signal, ServeConfig, Server};
use std::time::Duration;

pub(crate) fn run(a: ServeArgs) -> Result<()> {
    let (model, encoder) = load_base(&a.model, a.max_tokens.max(3), &a.device.open()?)?;
    let mut config = ServeConfig::new(a.artifacts.clone());
    config.max_tokens = a.max_tokens;
    config.max_inputs_per_request = a.max_inputs;
    config.max_batch_rows = a.max_batch_rows;
    config.batch_window = Duration::from_secs_f64(a.batch_window_ms.max(0.0) / 1000.0);
    config.queue_capacity = a.queue;
    config.max_loaded_bytes = a.max_loaded_mib << 20;
    config.merge_single_task = !a.no_merge;
    let server = Server::new(model, &encoder, config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.http_threads.max(1))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&a.addr)
            .await
            .with_context(|| format!("cannot listen on {}", a.addr))?;
        // A plain line, whatever the log settings: scripts wait for it to learn the port.
        eprintln!(
            "petl serve: listening on http://{} for the tasks in {}",
            listener.local_addr()?,
            a.artifacts.display()
        );
        server.run(listener, shutdown_signal()).await?;
        Ok(())
    })
}
