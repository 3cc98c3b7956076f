//! Compiles the vendored onnx.proto into Rust types with protox (no protoc needed).

fn main() {
    let proto = "proto/onnx.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"]).expect("onnx.proto compiles");
    prost_build::Config::new()
        .compile_fds(descriptors)
        .expect("prost generates the ONNX types");
}
