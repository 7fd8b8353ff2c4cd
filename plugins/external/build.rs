fn main() {
    println!("cargo:rerun-if-changed=schema/external.capnp");
    capnpc::CompilerCommand::new()
        .src_prefix("schema")
        .file("schema/external.capnp")
        .run()
        .expect("compiling schema/external.capnp (is the `capnp` tool installed? apt-get install capnproto)");
}
