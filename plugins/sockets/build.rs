fn main() {
    println!("cargo:rerun-if-changed=schema/inet.capnp");
    capnpc::CompilerCommand::new()
        .src_prefix("schema")
        .file("schema/inet.capnp")
        .run()
        .expect("compiling schema/inet.capnp (is the `capnp` tool installed? apt-get install capnproto)");
}
