fn main() {
    println!("cargo:rerun-if-changed=schema/files.capnp");
    capnpc::CompilerCommand::new()
        .src_prefix("schema")
        .file("schema/files.capnp")
        .run()
        .expect("compiling schema/files.capnp (is the `capnp` tool installed? apt-get install capnproto)");
}
