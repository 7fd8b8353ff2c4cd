fn main() {
    println!("cargo:rerun-if-changed=schema/tty.capnp");
    capnpc::CompilerCommand::new()
        .src_prefix("schema")
        .file("schema/tty.capnp")
        .run()
        .expect(
            "compiling schema/tty.capnp (is the `capnp` tool installed? apt-get install capnproto)",
        );
}
