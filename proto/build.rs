//! Generates the gRPC contract from `.proto` files with `protox`, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "weir/config/v1/config.proto",
        "weir/logs/v1/logs.proto",
        "weir/admin/v1/admin.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        // Admin messages double as the JSON shapes `weirctl --output json` prints.
        .type_attribute(".weir.admin.v1", "#[derive(serde::Serialize)]")
        .compile_fds(fds)?;
    Ok(())
}
