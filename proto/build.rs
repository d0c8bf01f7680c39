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
    for f in ["google/api/http.proto", "google/api/annotations.proto"] {
        println!("cargo:rerun-if-changed={f}");
    }
    let mut compiler = protox::Compiler::new(["."])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(files)?;
    // The encoded set keeps the `google.api.http` option values (prost_types would drop them as
    // unknown extension fields); the control plane's HTTP transcoding reads its routes from them.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("weir_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    let fds = compiler.file_descriptor_set();
    tonic_prost_build::configure()
        // Admin messages double as the JSON shapes `weirctl --output json` prints.
        .type_attribute(".weir.admin.v1", "#[derive(serde::Serialize)]")
        // Price files (`weirctl prices load`) are the SetPrices request body, read strictly.
        .type_attribute(
            ".weir.admin.v1.SetPricesRequest",
            "#[derive(serde::Deserialize)] #[serde(default, deny_unknown_fields)]",
        )
        .type_attribute(
            ".weir.admin.v1.SetPriceRequest",
            "#[derive(serde::Deserialize)] #[serde(default, deny_unknown_fields)]",
        )
        .type_attribute(
            ".weir.admin.v1.PriceRates",
            "#[derive(serde::Deserialize)] #[serde(default, deny_unknown_fields)]",
        )
        .compile_fds(fds)?;
    Ok(())
}
