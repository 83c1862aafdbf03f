# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_knockerd_global_optspecs
    string join \n c/config= knockd-conf= fwknop-access= fwknopd-conf= knockknock-profiles= kernel-log kernel-log-file= log-prefix= state-dir= worker-user= trusted= v/verbose dry-run h/help V/version
end

function __fish_knockerd_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_knockerd_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_knockerd_using_subcommand
    set -l cmd (__fish_knockerd_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c knockerd -n "__fish_knockerd_needs_command" -s c -l config -d 'Configuration file (TOML) [default: /etc/knocker/knockerd.toml]' -r -F
complete -c knockerd -n "__fish_knockerd_needs_command" -l knockd-conf -d 'Run a knockd configuration (knockd.conf) as it is, instead of knockerd\'s own TOML' -r -F
complete -c knockerd -n "__fish_knockerd_needs_command" -l fwknop-access -d 'Run fwknopd\'s access.conf as it is: fwknop clients work unchanged' -r -F
complete -c knockerd -n "__fish_knockerd_needs_command" -l fwknopd-conf -d 'With --fwknop-access: fwknopd.conf, for the SPA port (PCAP_FILTER), MAX_SPA_PACKET_AGE, ENABLE_SPA_PACKET_AGING and PCAP_INTF' -r -F
complete -c knockerd -n "__fish_knockerd_needs_command" -l knockknock-profiles -d 'Run knockknock\'s profiles as they are (DIR is knockknock\'s /etc/knockknock.d: its config and profiles/): knockknock clients work unchanged' -r -F
complete -c knockerd -n "__fish_knockerd_needs_command" -l kernel-log-file -d 'With --kernel-log: read this file (e.g. /var/log/kern.log) instead of /dev/kmsg' -r -F
complete -c knockerd -n "__fish_knockerd_needs_command" -l log-prefix -d 'With --kernel-log: your own LOG rule\'s prefix (knockknock\'s INSTALL writes "REJECT "), so that its lines count too, besides those of knockerd\'s table' -r
complete -c knockerd -n "__fish_knockerd_needs_command" -l state-dir -d 'Keep the ledger (pending stop commands, used sequences), the pid file and the last reload\'s verdict in DIR instead of the configuration\'s `state_dir` (default /var/lib/knocker); status, reload and teardown look for the daemon there' -r -F
complete -c knockerd -n "__fish_knockerd_needs_command" -l worker-user -d 'The unprivileged user knockerd\'s packet worker runs as (it reads and judges every packet; the root process only applies what it decides, after checking it) (default: `[daemon] worker_user`, else nobody)' -r
complete -c knockerd -n "__fish_knockerd_needs_command" -l trusted -d 'A source that knocker\'s protection never drops (the admin\'s management network, a VPN), as CIDR (192.0.2.0/24, 2001:db8::/32) or one address; repeat it for more. Added to `[daemon] trusted`; the one way to trust a source with --knockd-conf or --fwknop-access' -r
complete -c knockerd -n "__fish_knockerd_needs_command" -l kernel-log -d 'With --knockknock-profiles: see the knocks in the kernel log, as knockknock does (/dev/kmsg; --kernel-log-file for a file such as kern.log), not through NFLOG. knockerd\'s table then logs each knock port\'s SYNs with `flags tcp sequence`'
complete -c knockerd -n "__fish_knockerd_needs_command" -s v -l verbose -d 'More detail in the log: -v shows each knock\'s progress, -vv every packet seen'
complete -c knockerd -n "__fish_knockerd_needs_command" -l dry-run -d 'Run the daemon without acting: the worker reads its source and the doors decide as usual, and each grant is logged as "would grant", but no table is loaded, no set element added, no ledger written and no command run. knockerd\'s table is not loaded, so with the NFLOG source only the admin\'s own `log group N` rules reach it (the packet source sees knocks by itself)'
complete -c knockerd -n "__fish_knockerd_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c knockerd -n "__fish_knockerd_needs_command" -s V -l version -d 'Print version'
complete -c knockerd -n "__fish_knockerd_needs_command" -f -a "run" -d 'Run the daemon in the foreground (the default)'
complete -c knockerd -n "__fish_knockerd_needs_command" -f -a "check" -d 'Validate the configuration and print what the daemon will do; warn about other firewall chains that would drop granted packets anyway (naming ufw and firewalld, with the step each needs), and about what may lock you out. Exits non-zero for whatever would stop the daemon from starting (no door, no worker user, no nft, an unreadable server key, no clients file for spa/syn doors, a log file others can write to)'
complete -c knockerd -n "__fish_knockerd_needs_command" -f -a "status" -d 'Show whether knockerd runs, the grants open right now (door, address, service, time left), command-only doors\' openings and pending stop commands. Exits non-zero when knockerd is not running or its table is missing'
complete -c knockerd -n "__fish_knockerd_needs_command" -f -a "reload" -d 'Reload the running knockerd\'s configuration and wait for its verdict: exits non-zero, with the reason, when the new configuration was refused (the running one is kept)'
complete -c knockerd -n "__fish_knockerd_needs_command" -f -a "teardown" -d 'Remove knocker\'s nftables table and its include file. Open grants end, and knock and protected ports are no longer dropped by knocker: whatever else the firewall says applies. Refused while knockerd runs (stop it first: `systemctl stop knockerd`), unless --force'
complete -c knockerd -n "__fish_knockerd_needs_command" -f -a "import-knockd" -d 'Print a knockd configuration as knockerd\'s own TOML, with a note wherever the meaning differs'
complete -c knockerd -n "__fish_knockerd_needs_command" -f -a "import-fwknop" -d 'Print fwknopd\'s access.conf as knockerd\'s own TOML (keys go into key files, never into the TOML), with a note wherever the meaning differs'
complete -c knockerd -n "__fish_knockerd_needs_command" -f -a "import-knockknock" -d 'Print knockknock\'s profiles (DIR is knockknock\'s /etc/knockknock.d) as knockerd\'s own TOML: one `kind = "knockknock"` door per profile, read where it is'
complete -c knockerd -n "__fish_knockerd_needs_command" -f -a "keygen" -d 'Make the server\'s key pair for `spa` and `syn` doors (the private key as a 0600 file at the configuration\'s `server_key`, default /etc/knocker/server.key) and print its public key'
complete -c knockerd -n "__fish_knockerd_needs_command" -f -a "enroll" -d 'Enroll a client for the `spa` and `syn` doors: add its public key to the clients file and print the profile it needs (as TOML and as a QR code). Reload knockerd afterwards (`systemctl reload knockerd`); to revoke, delete the client\'s table and reload'
complete -c knockerd -n "__fish_knockerd_needs_command" -f -a "replay" -d 'Run the doors over recorded packets (a pcap or pcapng file, e.g. from `tcpdump -w`) on their own timestamps and print what would be granted and refused, and why, one line per event (`t=SECONDS grant door=NAME src=ADDR open=SERVICES for=DURATION`, `t=SECONDS refuse door=NAME src=ADDR reason="..."`). Touches no firewall, ledger or command; needs no root. Link types: Ethernet, Linux cooked (SLL, SLL2: `tcpdump -i any`), raw IP'
complete -c knockerd -n "__fish_knockerd_needs_command" -f -a "packet-worker" -d 'The packet worker, started by knockerd itself (not for use by hand)'
complete -c knockerd -n "__fish_knockerd_needs_command" -f -a "manuals" -d 'Write the man pages and shell completions made from this command line to DIR/man and DIR/completions, with knockerd.toml(5) from the configuration\'s reference (packaging/ holds the packaged copies, which the tests compare)'
complete -c knockerd -n "__fish_knockerd_needs_command" -f -a "demo" -d 'Run the self-contained demo: three network namespaces, real knockerd, real packets (root)'
complete -c knockerd -n "__fish_knockerd_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c knockerd -n "__fish_knockerd_using_subcommand run" -s c -l config -d 'Configuration file (TOML) [default: /etc/knocker/knockerd.toml]' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand run" -l knockd-conf -d 'Run a knockd configuration (knockd.conf) as it is, instead of knockerd\'s own TOML' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand run" -l fwknop-access -d 'Run fwknopd\'s access.conf as it is: fwknop clients work unchanged' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand run" -l fwknopd-conf -d 'With --fwknop-access: fwknopd.conf, for the SPA port (PCAP_FILTER), MAX_SPA_PACKET_AGE, ENABLE_SPA_PACKET_AGING and PCAP_INTF' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand run" -l knockknock-profiles -d 'Run knockknock\'s profiles as they are (DIR is knockknock\'s /etc/knockknock.d: its config and profiles/): knockknock clients work unchanged' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand run" -l kernel-log-file -d 'With --kernel-log: read this file (e.g. /var/log/kern.log) instead of /dev/kmsg' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand run" -l log-prefix -d 'With --kernel-log: your own LOG rule\'s prefix (knockknock\'s INSTALL writes "REJECT "), so that its lines count too, besides those of knockerd\'s table' -r
complete -c knockerd -n "__fish_knockerd_using_subcommand run" -l state-dir -d 'Keep the ledger (pending stop commands, used sequences), the pid file and the last reload\'s verdict in DIR instead of the configuration\'s `state_dir` (default /var/lib/knocker); status, reload and teardown look for the daemon there' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand run" -l worker-user -d 'The unprivileged user knockerd\'s packet worker runs as (it reads and judges every packet; the root process only applies what it decides, after checking it) (default: `[daemon] worker_user`, else nobody)' -r
complete -c knockerd -n "__fish_knockerd_using_subcommand run" -l trusted -d 'A source that knocker\'s protection never drops (the admin\'s management network, a VPN), as CIDR (192.0.2.0/24, 2001:db8::/32) or one address; repeat it for more. Added to `[daemon] trusted`; the one way to trust a source with --knockd-conf or --fwknop-access' -r
complete -c knockerd -n "__fish_knockerd_using_subcommand run" -l kernel-log -d 'With --knockknock-profiles: see the knocks in the kernel log, as knockknock does (/dev/kmsg; --kernel-log-file for a file such as kern.log), not through NFLOG. knockerd\'s table then logs each knock port\'s SYNs with `flags tcp sequence`'
complete -c knockerd -n "__fish_knockerd_using_subcommand run" -l dry-run -d 'Run without acting: grants are logged as "would grant", nothing is loaded, added, written or run (see `knockerd --help`)'
complete -c knockerd -n "__fish_knockerd_using_subcommand run" -s v -l verbose -d 'More detail in the log: -v shows each knock\'s progress, -vv every packet seen'
complete -c knockerd -n "__fish_knockerd_using_subcommand run" -s h -l help -d 'Print help'
complete -c knockerd -n "__fish_knockerd_using_subcommand check" -s c -l config -d 'Configuration file (TOML) [default: /etc/knocker/knockerd.toml]' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand check" -l knockd-conf -d 'Run a knockd configuration (knockd.conf) as it is, instead of knockerd\'s own TOML' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand check" -l fwknop-access -d 'Run fwknopd\'s access.conf as it is: fwknop clients work unchanged' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand check" -l fwknopd-conf -d 'With --fwknop-access: fwknopd.conf, for the SPA port (PCAP_FILTER), MAX_SPA_PACKET_AGE, ENABLE_SPA_PACKET_AGING and PCAP_INTF' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand check" -l knockknock-profiles -d 'Run knockknock\'s profiles as they are (DIR is knockknock\'s /etc/knockknock.d: its config and profiles/): knockknock clients work unchanged' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand check" -l kernel-log-file -d 'With --kernel-log: read this file (e.g. /var/log/kern.log) instead of /dev/kmsg' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand check" -l log-prefix -d 'With --kernel-log: your own LOG rule\'s prefix (knockknock\'s INSTALL writes "REJECT "), so that its lines count too, besides those of knockerd\'s table' -r
complete -c knockerd -n "__fish_knockerd_using_subcommand check" -l state-dir -d 'Keep the ledger (pending stop commands, used sequences), the pid file and the last reload\'s verdict in DIR instead of the configuration\'s `state_dir` (default /var/lib/knocker); status, reload and teardown look for the daemon there' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand check" -l worker-user -d 'The unprivileged user knockerd\'s packet worker runs as (it reads and judges every packet; the root process only applies what it decides, after checking it) (default: `[daemon] worker_user`, else nobody)' -r
complete -c knockerd -n "__fish_knockerd_using_subcommand check" -l trusted -d 'A source that knocker\'s protection never drops (the admin\'s management network, a VPN), as CIDR (192.0.2.0/24, 2001:db8::/32) or one address; repeat it for more. Added to `[daemon] trusted`; the one way to trust a source with --knockd-conf or --fwknop-access' -r
complete -c knockerd -n "__fish_knockerd_using_subcommand check" -l log-sample -d 'Also run the configured source\'s parser over the lines of FILE (sample lines of the log a kernel-log or log-file source reads) and print, per line, the knock it yields or why it yields none' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand check" -l kernel-log -d 'With --knockknock-profiles: see the knocks in the kernel log, as knockknock does (/dev/kmsg; --kernel-log-file for a file such as kern.log), not through NFLOG. knockerd\'s table then logs each knock port\'s SYNs with `flags tcp sequence`'
complete -c knockerd -n "__fish_knockerd_using_subcommand check" -s v -l verbose -d 'More detail in the log: -v shows each knock\'s progress, -vv every packet seen'
complete -c knockerd -n "__fish_knockerd_using_subcommand check" -s h -l help -d 'Print help'
complete -c knockerd -n "__fish_knockerd_using_subcommand status" -s c -l config -d 'Configuration file (TOML) [default: /etc/knocker/knockerd.toml]' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand status" -l knockd-conf -d 'Run a knockd configuration (knockd.conf) as it is, instead of knockerd\'s own TOML' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand status" -l fwknop-access -d 'Run fwknopd\'s access.conf as it is: fwknop clients work unchanged' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand status" -l fwknopd-conf -d 'With --fwknop-access: fwknopd.conf, for the SPA port (PCAP_FILTER), MAX_SPA_PACKET_AGE, ENABLE_SPA_PACKET_AGING and PCAP_INTF' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand status" -l knockknock-profiles -d 'Run knockknock\'s profiles as they are (DIR is knockknock\'s /etc/knockknock.d: its config and profiles/): knockknock clients work unchanged' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand status" -l kernel-log-file -d 'With --kernel-log: read this file (e.g. /var/log/kern.log) instead of /dev/kmsg' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand status" -l log-prefix -d 'With --kernel-log: your own LOG rule\'s prefix (knockknock\'s INSTALL writes "REJECT "), so that its lines count too, besides those of knockerd\'s table' -r
complete -c knockerd -n "__fish_knockerd_using_subcommand status" -l state-dir -d 'Keep the ledger (pending stop commands, used sequences), the pid file and the last reload\'s verdict in DIR instead of the configuration\'s `state_dir` (default /var/lib/knocker); status, reload and teardown look for the daemon there' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand status" -l kernel-log -d 'With --knockknock-profiles: see the knocks in the kernel log, as knockknock does (/dev/kmsg; --kernel-log-file for a file such as kern.log), not through NFLOG. knockerd\'s table then logs each knock port\'s SYNs with `flags tcp sequence`'
complete -c knockerd -n "__fish_knockerd_using_subcommand status" -l json -d 'Print one JSON object (its shape is documented in the README and stays stable)'
complete -c knockerd -n "__fish_knockerd_using_subcommand status" -s v -l verbose -d 'More detail in the log: -v shows each knock\'s progress, -vv every packet seen'
complete -c knockerd -n "__fish_knockerd_using_subcommand status" -s h -l help -d 'Print help'
complete -c knockerd -n "__fish_knockerd_using_subcommand reload" -s c -l config -d 'Configuration file (TOML) [default: /etc/knocker/knockerd.toml]' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand reload" -l knockd-conf -d 'Run a knockd configuration (knockd.conf) as it is, instead of knockerd\'s own TOML' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand reload" -l fwknop-access -d 'Run fwknopd\'s access.conf as it is: fwknop clients work unchanged' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand reload" -l fwknopd-conf -d 'With --fwknop-access: fwknopd.conf, for the SPA port (PCAP_FILTER), MAX_SPA_PACKET_AGE, ENABLE_SPA_PACKET_AGING and PCAP_INTF' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand reload" -l knockknock-profiles -d 'Run knockknock\'s profiles as they are (DIR is knockknock\'s /etc/knockknock.d: its config and profiles/): knockknock clients work unchanged' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand reload" -l kernel-log-file -d 'With --kernel-log: read this file (e.g. /var/log/kern.log) instead of /dev/kmsg' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand reload" -l log-prefix -d 'With --kernel-log: your own LOG rule\'s prefix (knockknock\'s INSTALL writes "REJECT "), so that its lines count too, besides those of knockerd\'s table' -r
complete -c knockerd -n "__fish_knockerd_using_subcommand reload" -l state-dir -d 'Keep the ledger (pending stop commands, used sequences), the pid file and the last reload\'s verdict in DIR instead of the configuration\'s `state_dir` (default /var/lib/knocker); status, reload and teardown look for the daemon there' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand reload" -l kernel-log -d 'With --knockknock-profiles: see the knocks in the kernel log, as knockknock does (/dev/kmsg; --kernel-log-file for a file such as kern.log), not through NFLOG. knockerd\'s table then logs each knock port\'s SYNs with `flags tcp sequence`'
complete -c knockerd -n "__fish_knockerd_using_subcommand reload" -s v -l verbose -d 'More detail in the log: -v shows each knock\'s progress, -vv every packet seen'
complete -c knockerd -n "__fish_knockerd_using_subcommand reload" -s h -l help -d 'Print help'
complete -c knockerd -n "__fish_knockerd_using_subcommand teardown" -s c -l config -d 'Configuration file (TOML) [default: /etc/knocker/knockerd.toml]' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand teardown" -l knockd-conf -d 'Run a knockd configuration (knockd.conf) as it is, instead of knockerd\'s own TOML' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand teardown" -l fwknop-access -d 'Run fwknopd\'s access.conf as it is: fwknop clients work unchanged' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand teardown" -l fwknopd-conf -d 'With --fwknop-access: fwknopd.conf, for the SPA port (PCAP_FILTER), MAX_SPA_PACKET_AGE, ENABLE_SPA_PACKET_AGING and PCAP_INTF' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand teardown" -l knockknock-profiles -d 'Run knockknock\'s profiles as they are (DIR is knockknock\'s /etc/knockknock.d: its config and profiles/): knockknock clients work unchanged' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand teardown" -l kernel-log-file -d 'With --kernel-log: read this file (e.g. /var/log/kern.log) instead of /dev/kmsg' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand teardown" -l log-prefix -d 'With --kernel-log: your own LOG rule\'s prefix (knockknock\'s INSTALL writes "REJECT "), so that its lines count too, besides those of knockerd\'s table' -r
complete -c knockerd -n "__fish_knockerd_using_subcommand teardown" -l state-dir -d 'Keep the ledger (pending stop commands, used sequences), the pid file and the last reload\'s verdict in DIR instead of the configuration\'s `state_dir` (default /var/lib/knocker); status, reload and teardown look for the daemon there' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand teardown" -l kernel-log -d 'With --knockknock-profiles: see the knocks in the kernel log, as knockknock does (/dev/kmsg; --kernel-log-file for a file such as kern.log), not through NFLOG. knockerd\'s table then logs each knock port\'s SYNs with `flags tcp sequence`'
complete -c knockerd -n "__fish_knockerd_using_subcommand teardown" -l force -d 'Stop the running knockerd first (SIGTERM; it would put its table back at once)'
complete -c knockerd -n "__fish_knockerd_using_subcommand teardown" -s v -l verbose -d 'More detail in the log: -v shows each knock\'s progress, -vv every packet seen'
complete -c knockerd -n "__fish_knockerd_using_subcommand teardown" -s h -l help -d 'Print help'
complete -c knockerd -n "__fish_knockerd_using_subcommand import-knockd" -s v -l verbose -d 'More detail in the log: -v shows each knock\'s progress, -vv every packet seen'
complete -c knockerd -n "__fish_knockerd_using_subcommand import-knockd" -s h -l help -d 'Print help'
complete -c knockerd -n "__fish_knockerd_using_subcommand import-fwknop" -l fwknopd-conf -d 'fwknopd.conf, for the SPA port (PCAP_FILTER), MAX_SPA_PACKET_AGE, ENABLE_SPA_PACKET_AGING and PCAP_INTF' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand import-fwknop" -s v -l verbose -d 'More detail in the log: -v shows each knock\'s progress, -vv every packet seen'
complete -c knockerd -n "__fish_knockerd_using_subcommand import-fwknop" -s h -l help -d 'Print help'
complete -c knockerd -n "__fish_knockerd_using_subcommand import-knockknock" -s v -l verbose -d 'More detail in the log: -v shows each knock\'s progress, -vv every packet seen'
complete -c knockerd -n "__fish_knockerd_using_subcommand import-knockknock" -s h -l help -d 'Print help'
complete -c knockerd -n "__fish_knockerd_using_subcommand keygen" -s c -l config -d 'Configuration file (TOML) [default: /etc/knocker/knockerd.toml]' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand keygen" -l force -d 'Replace an existing key: every enrolled client needs a new profile afterwards'
complete -c knockerd -n "__fish_knockerd_using_subcommand keygen" -s v -l verbose -d 'More detail in the log: -v shows each knock\'s progress, -vv every packet seen'
complete -c knockerd -n "__fish_knockerd_using_subcommand keygen" -s h -l help -d 'Print help'
complete -c knockerd -n "__fish_knockerd_using_subcommand enroll" -s c -l config -d 'Configuration file (TOML) [default: /etc/knocker/knockerd.toml]' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand enroll" -l public-key -d 'The client\'s public key, as `knocker keygen --identity` prints it' -r
complete -c knockerd -n "__fish_knockerd_using_subcommand enroll" -l server -d 'The address or host name clients use to reach this server' -r
complete -c knockerd -n "__fish_knockerd_using_subcommand enroll" -l door -d 'Enroll for these doors only (repeat the option); default: every spa and syn door in the configuration now (the clients file lists them, so a door added later needs re-enrolling)' -r
complete -c knockerd -n "__fish_knockerd_using_subcommand enroll" -l out -d 'Also write the profiles to FILE (mode 0600, never overwritten), to hand to the client' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand enroll" -l no-qr -d 'Do not print the QR code'
complete -c knockerd -n "__fish_knockerd_using_subcommand enroll" -s v -l verbose -d 'More detail in the log: -v shows each knock\'s progress, -vv every packet seen'
complete -c knockerd -n "__fish_knockerd_using_subcommand enroll" -s h -l help -d 'Print help'
complete -c knockerd -n "__fish_knockerd_using_subcommand replay" -s c -l config -d 'Configuration file (TOML) [default: /etc/knocker/knockerd.toml]' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand replay" -l knockd-conf -d 'Run a knockd configuration (knockd.conf) as it is, instead of knockerd\'s own TOML' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand replay" -l fwknop-access -d 'Run fwknopd\'s access.conf as it is: fwknop clients work unchanged' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand replay" -l fwknopd-conf -d 'With --fwknop-access: fwknopd.conf, for the SPA port (PCAP_FILTER), MAX_SPA_PACKET_AGE, ENABLE_SPA_PACKET_AGING and PCAP_INTF' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand replay" -l knockknock-profiles -d 'Run knockknock\'s profiles as they are (DIR is knockknock\'s /etc/knockknock.d: its config and profiles/): knockknock clients work unchanged' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand replay" -l kernel-log-file -d 'With --kernel-log: read this file (e.g. /var/log/kern.log) instead of /dev/kmsg' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand replay" -l log-prefix -d 'With --kernel-log: your own LOG rule\'s prefix (knockknock\'s INSTALL writes "REJECT "), so that its lines count too, besides those of knockerd\'s table' -r
complete -c knockerd -n "__fish_knockerd_using_subcommand replay" -l kernel-log -d 'With --knockknock-profiles: see the knocks in the kernel log, as knockknock does (/dev/kmsg; --kernel-log-file for a file such as kern.log), not through NFLOG. knockerd\'s table then logs each knock port\'s SYNs with `flags tcp sequence`'
complete -c knockerd -n "__fish_knockerd_using_subcommand replay" -s v -l verbose -d 'More detail in the log: -v shows each knock\'s progress, -vv every packet seen'
complete -c knockerd -n "__fish_knockerd_using_subcommand replay" -s h -l help -d 'Print help'
complete -c knockerd -n "__fish_knockerd_using_subcommand packet-worker" -s c -l config -d 'Configuration file (TOML) [default: /etc/knocker/knockerd.toml]' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand packet-worker" -l knockd-conf -d 'Run a knockd configuration (knockd.conf) as it is, instead of knockerd\'s own TOML' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand packet-worker" -l fwknop-access -d 'Run fwknopd\'s access.conf as it is: fwknop clients work unchanged' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand packet-worker" -l fwknopd-conf -d 'With --fwknop-access: fwknopd.conf, for the SPA port (PCAP_FILTER), MAX_SPA_PACKET_AGE, ENABLE_SPA_PACKET_AGING and PCAP_INTF' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand packet-worker" -l knockknock-profiles -d 'Run knockknock\'s profiles as they are (DIR is knockknock\'s /etc/knockknock.d: its config and profiles/): knockknock clients work unchanged' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand packet-worker" -l kernel-log-file -d 'With --kernel-log: read this file (e.g. /var/log/kern.log) instead of /dev/kmsg' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand packet-worker" -l log-prefix -d 'With --kernel-log: your own LOG rule\'s prefix (knockknock\'s INSTALL writes "REJECT "), so that its lines count too, besides those of knockerd\'s table' -r
complete -c knockerd -n "__fish_knockerd_using_subcommand packet-worker" -l state-dir -d 'Keep the ledger (pending stop commands, used sequences), the pid file and the last reload\'s verdict in DIR instead of the configuration\'s `state_dir` (default /var/lib/knocker); status, reload and teardown look for the daemon there' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand packet-worker" -l parent -d 'The knockerd that started it' -r
complete -c knockerd -n "__fish_knockerd_using_subcommand packet-worker" -l user -d 'Who to become once NFLOG is bound' -r
complete -c knockerd -n "__fish_knockerd_using_subcommand packet-worker" -l kernel-log -d 'With --knockknock-profiles: see the knocks in the kernel log, as knockknock does (/dev/kmsg; --kernel-log-file for a file such as kern.log), not through NFLOG. knockerd\'s table then logs each knock port\'s SYNs with `flags tcp sequence`'
complete -c knockerd -n "__fish_knockerd_using_subcommand packet-worker" -s v -l verbose -d 'More detail in the log: -v shows each knock\'s progress, -vv every packet seen'
complete -c knockerd -n "__fish_knockerd_using_subcommand packet-worker" -s h -l help -d 'Print help'
complete -c knockerd -n "__fish_knockerd_using_subcommand manuals" -l out -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand manuals" -l docs -d 'Also write the reference as Markdown, to DOCS/knockerd.toml.md' -r -F
complete -c knockerd -n "__fish_knockerd_using_subcommand manuals" -s v -l verbose -d 'More detail in the log: -v shows each knock\'s progress, -vv every packet seen'
complete -c knockerd -n "__fish_knockerd_using_subcommand manuals" -s h -l help -d 'Print help'
complete -c knockerd -n "__fish_knockerd_using_subcommand demo" -l open-for -d 'Seconds the demo door stays open' -r
complete -c knockerd -n "__fish_knockerd_using_subcommand demo" -s v -l verbose -d 'More detail in the log: -v shows each knock\'s progress, -vv every packet seen'
complete -c knockerd -n "__fish_knockerd_using_subcommand demo" -s h -l help -d 'Print help'
complete -c knockerd -n "__fish_knockerd_using_subcommand help; and not __fish_seen_subcommand_from run check status reload teardown import-knockd import-fwknop import-knockknock keygen enroll replay packet-worker manuals demo help" -f -a "run" -d 'Run the daemon in the foreground (the default)'
complete -c knockerd -n "__fish_knockerd_using_subcommand help; and not __fish_seen_subcommand_from run check status reload teardown import-knockd import-fwknop import-knockknock keygen enroll replay packet-worker manuals demo help" -f -a "check" -d 'Validate the configuration and print what the daemon will do; warn about other firewall chains that would drop granted packets anyway (naming ufw and firewalld, with the step each needs), and about what may lock you out. Exits non-zero for whatever would stop the daemon from starting (no door, no worker user, no nft, an unreadable server key, no clients file for spa/syn doors, a log file others can write to)'
complete -c knockerd -n "__fish_knockerd_using_subcommand help; and not __fish_seen_subcommand_from run check status reload teardown import-knockd import-fwknop import-knockknock keygen enroll replay packet-worker manuals demo help" -f -a "status" -d 'Show whether knockerd runs, the grants open right now (door, address, service, time left), command-only doors\' openings and pending stop commands. Exits non-zero when knockerd is not running or its table is missing'
complete -c knockerd -n "__fish_knockerd_using_subcommand help; and not __fish_seen_subcommand_from run check status reload teardown import-knockd import-fwknop import-knockknock keygen enroll replay packet-worker manuals demo help" -f -a "reload" -d 'Reload the running knockerd\'s configuration and wait for its verdict: exits non-zero, with the reason, when the new configuration was refused (the running one is kept)'
complete -c knockerd -n "__fish_knockerd_using_subcommand help; and not __fish_seen_subcommand_from run check status reload teardown import-knockd import-fwknop import-knockknock keygen enroll replay packet-worker manuals demo help" -f -a "teardown" -d 'Remove knocker\'s nftables table and its include file. Open grants end, and knock and protected ports are no longer dropped by knocker: whatever else the firewall says applies. Refused while knockerd runs (stop it first: `systemctl stop knockerd`), unless --force'
complete -c knockerd -n "__fish_knockerd_using_subcommand help; and not __fish_seen_subcommand_from run check status reload teardown import-knockd import-fwknop import-knockknock keygen enroll replay packet-worker manuals demo help" -f -a "import-knockd" -d 'Print a knockd configuration as knockerd\'s own TOML, with a note wherever the meaning differs'
complete -c knockerd -n "__fish_knockerd_using_subcommand help; and not __fish_seen_subcommand_from run check status reload teardown import-knockd import-fwknop import-knockknock keygen enroll replay packet-worker manuals demo help" -f -a "import-fwknop" -d 'Print fwknopd\'s access.conf as knockerd\'s own TOML (keys go into key files, never into the TOML), with a note wherever the meaning differs'
complete -c knockerd -n "__fish_knockerd_using_subcommand help; and not __fish_seen_subcommand_from run check status reload teardown import-knockd import-fwknop import-knockknock keygen enroll replay packet-worker manuals demo help" -f -a "import-knockknock" -d 'Print knockknock\'s profiles (DIR is knockknock\'s /etc/knockknock.d) as knockerd\'s own TOML: one `kind = "knockknock"` door per profile, read where it is'
complete -c knockerd -n "__fish_knockerd_using_subcommand help; and not __fish_seen_subcommand_from run check status reload teardown import-knockd import-fwknop import-knockknock keygen enroll replay packet-worker manuals demo help" -f -a "keygen" -d 'Make the server\'s key pair for `spa` and `syn` doors (the private key as a 0600 file at the configuration\'s `server_key`, default /etc/knocker/server.key) and print its public key'
complete -c knockerd -n "__fish_knockerd_using_subcommand help; and not __fish_seen_subcommand_from run check status reload teardown import-knockd import-fwknop import-knockknock keygen enroll replay packet-worker manuals demo help" -f -a "enroll" -d 'Enroll a client for the `spa` and `syn` doors: add its public key to the clients file and print the profile it needs (as TOML and as a QR code). Reload knockerd afterwards (`systemctl reload knockerd`); to revoke, delete the client\'s table and reload'
complete -c knockerd -n "__fish_knockerd_using_subcommand help; and not __fish_seen_subcommand_from run check status reload teardown import-knockd import-fwknop import-knockknock keygen enroll replay packet-worker manuals demo help" -f -a "replay" -d 'Run the doors over recorded packets (a pcap or pcapng file, e.g. from `tcpdump -w`) on their own timestamps and print what would be granted and refused, and why, one line per event (`t=SECONDS grant door=NAME src=ADDR open=SERVICES for=DURATION`, `t=SECONDS refuse door=NAME src=ADDR reason="..."`). Touches no firewall, ledger or command; needs no root. Link types: Ethernet, Linux cooked (SLL, SLL2: `tcpdump -i any`), raw IP'
complete -c knockerd -n "__fish_knockerd_using_subcommand help; and not __fish_seen_subcommand_from run check status reload teardown import-knockd import-fwknop import-knockknock keygen enroll replay packet-worker manuals demo help" -f -a "packet-worker" -d 'The packet worker, started by knockerd itself (not for use by hand)'
complete -c knockerd -n "__fish_knockerd_using_subcommand help; and not __fish_seen_subcommand_from run check status reload teardown import-knockd import-fwknop import-knockknock keygen enroll replay packet-worker manuals demo help" -f -a "manuals" -d 'Write the man pages and shell completions made from this command line to DIR/man and DIR/completions, with knockerd.toml(5) from the configuration\'s reference (packaging/ holds the packaged copies, which the tests compare)'
complete -c knockerd -n "__fish_knockerd_using_subcommand help; and not __fish_seen_subcommand_from run check status reload teardown import-knockd import-fwknop import-knockknock keygen enroll replay packet-worker manuals demo help" -f -a "demo" -d 'Run the self-contained demo: three network namespaces, real knockerd, real packets (root)'
complete -c knockerd -n "__fish_knockerd_using_subcommand help; and not __fish_seen_subcommand_from run check status reload teardown import-knockd import-fwknop import-knockknock keygen enroll replay packet-worker manuals demo help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
