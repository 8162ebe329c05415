//! `orders`: the example order service (see the library's docs). Settings from the
//! environment: `ORDERS_LISTEN` (default 127.0.0.1:8080), `ORDERS_POSTGRES`
//! (a tokio-postgres connection string), `ORDERS_REDIS` (`redis://…`), `ORDERS_PAYMENTS`
//! (the payments service's base URL).

use std::process::ExitCode;

use palisade_example_orders::{Settings, app};

#[tokio::main]
async fn main() -> ExitCode {
    let var =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let settings = Settings {
        postgres: var(
            "ORDERS_POSTGRES",
            "host=127.0.0.1 user=postgres dbname=postgres",
        ),
        redis: var("ORDERS_REDIS", "redis://127.0.0.1:6379/"),
        payments: var("ORDERS_PAYMENTS", "http://127.0.0.1:8081"),
    };
    let listen = var("ORDERS_LISTEN", "127.0.0.1:8080");
    let (router, _health) = match app(settings).await {
        Ok(built) => built,
        Err(error) => {
            eprintln!("orders: cannot start: {error}");
            return ExitCode::from(1);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("orders: cannot listen on {listen}: {error}");
            return ExitCode::from(1);
        }
    };
    println!("orders listening on {listen}");
    match axum::serve(listener, router).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("orders: {error}");
            ExitCode::from(1)
        }
    }
}
