//! `webinar-bench`: see the crate docs and README "Performance".

use clap::Parser;
use webinar_bench::report;
use webinar_bench::run::{run, Options};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let out = options.out.clone();
    let report = run(options, command).await?;
    println!("{}", report::table(&report));
    println!(
        "reports: {} and {}",
        out.join("report.json").display(),
        out.join("report.html").display()
    );
    Ok(())
}
