//! `plumb-collector`: for now only its version. The mTLS service, storage and
//! queries are tracked in the collector issue.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version") | Some("-V") | None => {
            println!("plumb-collector {}", env!("CARGO_PKG_VERSION"));
        }
        Some(other) => {
            eprintln!("plumb-collector: '{other}' is not available yet in this version");
            std::process::exit(2);
        }
    }
}
