//! Compiles the protobuf definitions with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "tollgate/v1/snapshot.proto",
        "tollgate/v1/sync.proto",
        "tollgate/v1/admin.proto",
        "tollgate/v1/identity_admin.proto",
        "tollgate/v1/settings_admin.proto",
        "tollgate/v1/spend_admin.proto",
        "tollgate/v1/audit_admin.proto",
        "tollgate/v1/rate_limit_admin.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Inline provider credentials: `Debug` is written by hand (redacted) in lib.rs.
        .skip_debug(["tollgate.v1.SecretRef"])
        .compile_fds(descriptors)?;
    Ok(())
}
