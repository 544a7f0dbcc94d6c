//! Generates the gRPC code from `proto/` with protox (no `protoc` needed) and writes the file
//! descriptor set that server reflection serves.

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let protos =
        ["proto/pax/ledger/v1/ledger.proto", "proto/pax/ledger/v1/query.proto", "proto/pax/ledger/v1/audit.proto"];
    let fds = protox::compile(protos, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("pax_ledger_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(fds)?;
    Ok(())
}
