//! Generates the gRPC code from `proto/` with protox (no `protoc` needed) and writes the file
//! descriptor set that server reflection serves.
//!
//! Two passes over the same descriptors: the messages and the clients with prost's codec, then
//! the servers alone (into `server/`, naming the messages of the first pass) with the server's
//! own codec, `service::RequestCodec`, which answers a request that is not valid protobuf with
//! INVALID_ARGUMENT. A client keeps prost's codec: a response that does not decode is no fault
//! of its caller.

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let protos = [
        "proto/pax/ledger/v1/ledger.proto",
        "proto/pax/ledger/v1/query.proto",
        "proto/pax/ledger/v1/audit.proto",
        "proto/pax/ledger/v1/access.proto",
    ];
    let fds = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("pax_ledger_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure().build_server(false).build_client(true).compile_fds(fds.clone())?;
    let server_dir = out_dir.join("server");
    fs::create_dir_all(&server_dir)?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(false)
        .codec_path("crate::service::RequestCodec")
        .extern_path(".pax.ledger.v1", "crate::proto::v1")
        .out_dir(server_dir)
        .compile_fds(fds)?;
    Ok(())
}
