//! Compiles `proto/*.proto` in pure Rust (protox), so no `protoc` is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["palisade.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Audit events travel as the bytes the node encoded (see `event.rs`).
        .bytes(".palisade.v1.AuditBatch.events")
        .bytes(".palisade.v1.AuditEvents.events")
        // Smaller per-stream buffers than tonic's 8 KiB + 8 KiB (see src/codec.rs).
        .codec_path("crate::codec::SmallBuffers")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto/palisade.proto");
    Ok(())
}
