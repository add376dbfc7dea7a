#![no_std]
// The program is the binary target (src/main.rs); this library target lets
// `failover-user` name the crate as a build-dependency (cargo rebuilds it
// when the eBPF sources change) and holds what every program binary needs
// (also the benchmark's, in `failover-bench-ebpf`).

/// The panic handler and license section every program binary needs.
#[macro_export]
macro_rules! program_boilerplate {
    () => {
        #[cfg(not(test))]
        #[panic_handler]
        fn panic(_info: &core::panic::PanicInfo) -> ! {
            // An unbounded loop fails verification, so any reachable panic
            // is caught at load time rather than at run time.
            loop {}
        }

        #[unsafe(link_section = "license")]
        #[unsafe(no_mangle)]
        static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
    };
}
