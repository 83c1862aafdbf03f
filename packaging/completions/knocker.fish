# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_knocker_global_optspecs
    string join \n h/help V/version
end

function __fish_knocker_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_knocker_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_knocker_using_subcommand
    set -l cmd (__fish_knocker_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c knocker -n "__fish_knocker_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c knocker -n "__fish_knocker_needs_command" -s V -l version -d 'Print version'
complete -c knocker -n "__fish_knocker_needs_command" -f -a "knock" -d 'Knock on HOST\'s ports, in order, or knock a saved profile'
complete -c knocker -n "__fish_knocker_needs_command" -f -a "sequence" -d 'Print a profile\'s current knock sequence, for any knock tool'
complete -c knocker -n "__fish_knocker_needs_command" -f -a "keygen" -d 'Write a new random key to a file (mode 0600): a shared key (--out), or this machine\'s identity for spa and syn profiles (--identity)'
complete -c knocker -n "__fish_knocker_needs_command" -f -a "profile" -d 'Add, list, show or remove saved profiles'
complete -c knocker -n "__fish_knocker_needs_command" -f -a "spa" -d 'Send a single packet authorization (SPA) packet: fwknop\'s format, with --fwknop'
complete -c knocker -n "__fish_knocker_needs_command" -f -a "connect" -d 'Knock (if HOST has a profile), wait until PORT answers, then relay stdin and stdout to it'
complete -c knocker -n "__fish_knocker_needs_command" -f -a "proxy" -d 'A local SOCKS5 proxy that knocks (with the destination\'s profile) before it connects'
complete -c knocker -n "__fish_knocker_needs_command" -f -a "manuals" -d 'Write the man pages and shell completions made from this command line to DIR/man and DIR/completions (packaging/ holds the packaged copies, which the tests compare)'
complete -c knocker -n "__fish_knocker_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c knocker -n "__fish_knocker_using_subcommand knock" -s d -l delay -d 'Wait MS milliseconds after each knock (also after the last, giving the door time to open)' -r
complete -c knocker -n "__fish_knocker_using_subcommand knock" -l open -d 'A spa or syn profile: knock for these of its services only (PROTO/PORT, repeatable or comma-separated, e.g. tcp/22)' -r
complete -c knocker -n "__fish_knocker_using_subcommand knock" -l time-offset -d 'Shift the time put in knocks by SECONDS (e.g. -90 or +30; also 2m, -1h), for a client whose clock is off: knockerd\'s log says by how much when it refuses a knock as too old or too new. Applies to spa, syn, encoded, fwknop and rotating (totp) knocks' -r
complete -c knocker -n "__fish_knocker_using_subcommand knock" -l at -d 'For tests only: knock as if the time were UNIX_SECS (a totp step, an encoded request\'s time)' -r
complete -c knocker -n "__fish_knocker_using_subcommand knock" -s u -l udp -d 'Make UDP the protocol of ports that name none (default: TCP)'
complete -c knocker -n "__fish_knocker_using_subcommand knock" -s 4 -l ipv4 -d 'Use an IPv4 address of HOST'
complete -c knocker -n "__fish_knocker_using_subcommand knock" -s 6 -l ipv6 -d 'Use an IPv6 address of HOST'
complete -c knocker -n "__fish_knocker_using_subcommand knock" -s v -l verbose -d 'Print each knock as it is sent: `hitting tcp 10.200.1.1:7000`'
complete -c knocker -n "__fish_knocker_using_subcommand knock" -s q -l quiet -d 'Do not say on standard error how long the door stays open'
complete -c knocker -n "__fish_knocker_using_subcommand knock" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c knocker -n "__fish_knocker_using_subcommand knock" -s V -l version -d 'Print version'
complete -c knocker -n "__fish_knocker_using_subcommand sequence" -l at -d 'For tests only: the sequence as of UNIX_SECS instead of now (totp)' -r
complete -c knocker -n "__fish_knocker_using_subcommand sequence" -l consume -d 'hotp: use the counter up (move the counter file on), as knocking does'
complete -c knocker -n "__fish_knocker_using_subcommand sequence" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c knocker -n "__fish_knocker_using_subcommand sequence" -s V -l version -d 'Print version'
complete -c knocker -n "__fish_knocker_using_subcommand keygen" -s o -l out -d 'The key file to create (it must not exist)' -r -F
complete -c knocker -n "__fish_knocker_using_subcommand keygen" -l identity -d 'Make this machine\'s identity for spa and syn profiles, in FILE (default identity.key beside profiles.toml), and print its public key for the server\'s admin' -r -F
complete -c knocker -n "__fish_knocker_using_subcommand keygen" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c knocker -n "__fish_knocker_using_subcommand keygen" -s V -l version -d 'Print version'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and not __fish_seen_subcommand_from add list ls show remove rm help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and not __fish_seen_subcommand_from add list ls show remove rm help" -s V -l version -d 'Print version'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and not __fish_seen_subcommand_from add list ls show remove rm help" -f -a "add" -d 'Save a knock sequence as NAME (-u, -d, -4 and -6 are saved with it)'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and not __fish_seen_subcommand_from add list ls show remove rm help" -f -a "list" -d 'List saved profiles: name, host and sequence'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and not __fish_seen_subcommand_from add list ls show remove rm help" -f -a "ls" -d 'List saved profiles: name, host and sequence'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and not __fish_seen_subcommand_from add list ls show remove rm help" -f -a "show" -d 'Print one profile as it is written in profiles.toml'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and not __fish_seen_subcommand_from add list ls show remove rm help" -f -a "remove" -d 'Delete a saved profile'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and not __fish_seen_subcommand_from add list ls show remove rm help" -f -a "rm" -d 'Delete a saved profile'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and not __fish_seen_subcommand_from add list ls show remove rm help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and __fish_seen_subcommand_from add" -s d -l delay -d 'Wait MS milliseconds after each knock (also after the last, giving the door time to open)' -r
complete -c knocker -n "__fish_knocker_using_subcommand profile; and __fish_seen_subcommand_from add" -s u -l udp -d 'Make UDP the protocol of ports that name none (default: TCP)'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and __fish_seen_subcommand_from add" -s 4 -l ipv4 -d 'Use an IPv4 address of HOST'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and __fish_seen_subcommand_from add" -s 6 -l ipv6 -d 'Use an IPv6 address of HOST'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and __fish_seen_subcommand_from add" -s f -l force -d 'Replace a profile that already has this name'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and __fish_seen_subcommand_from add" -s V -l version -d 'Print version'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and __fish_seen_subcommand_from ls" -s h -l help -d 'Print help'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and __fish_seen_subcommand_from ls" -s V -l version -d 'Print version'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and __fish_seen_subcommand_from remove" -s V -l version -d 'Print version'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and __fish_seen_subcommand_from rm" -s h -l help -d 'Print help'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and __fish_seen_subcommand_from rm" -s V -l version -d 'Print version'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and __fish_seen_subcommand_from help" -f -a "add" -d 'Save a knock sequence as NAME (-u, -d, -4 and -6 are saved with it)'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and __fish_seen_subcommand_from help" -f -a "list" -d 'List saved profiles: name, host and sequence'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and __fish_seen_subcommand_from help" -f -a "show" -d 'Print one profile as it is written in profiles.toml'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Delete a saved profile'
complete -c knocker -n "__fish_knocker_using_subcommand profile; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c knocker -n "__fish_knocker_using_subcommand spa" -s D -l destination -d 'The fwknopd server, as fwknop\'s -D gives it' -r
complete -c knocker -n "__fish_knocker_using_subcommand spa" -s A -l access -d 'Services to open: proto/port[,proto/port...], e.g. tcp/22,udp/53' -r
complete -c knocker -n "__fish_knocker_using_subcommand spa" -s C -l server-cmd -d 'Ask to run this command on the server instead (fwknop\'s command message; the server must allow exactly it)' -r
complete -c knocker -n "__fish_knocker_using_subcommand spa" -s N -l nat-access -d 'Ask the server to send the opened service on to an inner host, IP:PORT (fwknop\'s NAT access message): fwknopd honours it with ENABLE_IPT_FORWARDING Y; knockerd only in a FORCE_NAT stanza, and then to the stanza\'s own inner host' -r
complete -c knocker -n "__fish_knocker_using_subcommand spa" -s a -l allow-ip -d 'The IPv4 address to open for (default: this machine\'s address towards HOST)' -r
complete -c knocker -n "__fish_knocker_using_subcommand spa" -l key-rijndael -d 'The encryption key, as text' -r
complete -c knocker -n "__fish_knocker_using_subcommand spa" -l key-base64-rijndael -d 'The encryption key, in base64' -r
complete -c knocker -n "__fish_knocker_using_subcommand spa" -l key-hmac -d 'The HMAC key, as text' -r
complete -c knocker -n "__fish_knocker_using_subcommand spa" -l key-base64-hmac -d 'The HMAC key, in base64' -r
complete -c knocker -n "__fish_knocker_using_subcommand spa" -l hmac-digest-type -d 'HMAC digest: md5, sha1, sha256 (default), sha384 or sha512' -r
complete -c knocker -n "__fish_knocker_using_subcommand spa" -s m -l digest-type -d 'Digest of the plaintext: md5, sha1, sha256 (default), sha384 or sha512' -r
complete -c knocker -n "__fish_knocker_using_subcommand spa" -s f -l fw-timeout -d 'Ask the server to keep access open for SECS seconds (fwknop message type 3)' -r
complete -c knocker -n "__fish_knocker_using_subcommand spa" -s p -l server-port -d 'The server\'s port (default 62201)' -r
complete -c knocker -n "__fish_knocker_using_subcommand spa" -s P -l server-proto -d 'The protocol to send with: udp only' -r
complete -c knocker -n "__fish_knocker_using_subcommand spa" -s S -l source-port -d 'The source port to send from (default: any)' -r
complete -c knocker -n "__fish_knocker_using_subcommand spa" -s U -l spoof-user -d 'The user name in the packet (default: $SPOOF_USER, $LOGNAME, $USER)' -r
complete -c knocker -n "__fish_knocker_using_subcommand spa" -l time-offset-plus -d 'Add TIME to the packet\'s timestamp: N seconds, Nm, Nh or Nd' -r
complete -c knocker -n "__fish_knocker_using_subcommand spa" -l time-offset-minus -d 'Subtract TIME from the packet\'s timestamp' -r
complete -c knocker -n "__fish_knocker_using_subcommand spa" -l time-offset -d 'Shift the time put in knocks by SECONDS (e.g. -90 or +30; also 2m, -1h), for a client whose clock is off: knockerd\'s log says by how much when it refuses a knock as too old or too new. Applies to spa, syn, encoded, fwknop and rotating (totp) knocks' -r
complete -c knocker -n "__fish_knocker_using_subcommand spa" -s n -l named-config -d 'Use this stanza of the rc file' -r
complete -c knocker -n "__fish_knocker_using_subcommand spa" -l rc-file -d 'The rc file (default ~/.fwknoprc)' -r -F
complete -c knocker -n "__fish_knocker_using_subcommand spa" -s B -l save-packet -d 'Also write the packet to FILE (one line), as fwknop -B does' -r -F
complete -c knocker -n "__fish_knocker_using_subcommand spa" -l at -d 'For tests only: the packet\'s time is UNIX_SECS instead of now' -r
complete -c knocker -n "__fish_knocker_using_subcommand spa" -l fwknop -d 'Send fwknop\'s SPA format (the only one today)'
complete -c knocker -n "__fish_knocker_using_subcommand spa" -s s -l source-ip -d 'Ask the server to open for the packet\'s source address (allow IP 0.0.0.0)'
complete -c knocker -n "__fish_knocker_using_subcommand spa" -s R -l resolve-ip-https -d 'Refused: fwknop asks a web service for this machine\'s address; knocker never does'
complete -c knocker -n "__fish_knocker_using_subcommand spa" -l use-hmac -d 'Accepted for fwknop\'s sake: knocker always adds an HMAC'
complete -c knocker -n "__fish_knocker_using_subcommand spa" -l no-rc-file -d 'Read no rc file'
complete -c knocker -n "__fish_knocker_using_subcommand spa" -s b -l save-packet-append -d 'With -B: append to FILE instead of replacing it'
complete -c knocker -n "__fish_knocker_using_subcommand spa" -s T -l test -d 'Build the packet but do not send it (with -B: only write it)'
complete -c knocker -n "__fish_knocker_using_subcommand spa" -s v -l verbose -d 'Say what is sent'
complete -c knocker -n "__fish_knocker_using_subcommand spa" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c knocker -n "__fish_knocker_using_subcommand spa" -s V -l version -d 'Print version'
complete -c knocker -n "__fish_knocker_using_subcommand connect" -l tries -d 'Knock at most N times (1 to 100) before giving up' -r
complete -c knocker -n "__fish_knocker_using_subcommand connect" -l wait -d 'After each knock, try to connect for up to SECS seconds (0.1 to 600, e.g. 2 or 0.5)' -r
complete -c knocker -n "__fish_knocker_using_subcommand connect" -l time-offset -d 'Shift the time put in knocks by SECONDS (e.g. -90 or +30; also 2m, -1h), for a client whose clock is off: knockerd\'s log says by how much when it refuses a knock as too old or too new. Applies to spa, syn, encoded, fwknop and rotating (totp) knocks' -r
complete -c knocker -n "__fish_knocker_using_subcommand connect" -s v -l verbose -d 'Say on standard error what is knocked and where knocker connects'
complete -c knocker -n "__fish_knocker_using_subcommand connect" -s 4 -l ipv4 -d 'Use an IPv4 address of the host'
complete -c knocker -n "__fish_knocker_using_subcommand connect" -s 6 -l ipv6 -d 'Use an IPv6 address of the host'
complete -c knocker -n "__fish_knocker_using_subcommand connect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c knocker -n "__fish_knocker_using_subcommand connect" -s V -l version -d 'Print version'
complete -c knocker -n "__fish_knocker_using_subcommand proxy" -l listen -d 'Listen on ADDR:PORT, a loopback address (port 0: any free port, printed at start)' -r
complete -c knocker -n "__fish_knocker_using_subcommand proxy" -l max-connections -d 'Serve at most N connections at once (1 to 4096); more wait to be accepted' -r
complete -c knocker -n "__fish_knocker_using_subcommand proxy" -l tries -d 'Knock at most N times (1 to 100) before giving up' -r
complete -c knocker -n "__fish_knocker_using_subcommand proxy" -l wait -d 'After each knock, try to connect for up to SECS seconds (0.1 to 600, e.g. 2 or 0.5)' -r
complete -c knocker -n "__fish_knocker_using_subcommand proxy" -l time-offset -d 'Shift the time put in knocks by SECONDS (e.g. -90 or +30; also 2m, -1h), for a client whose clock is off: knockerd\'s log says by how much when it refuses a knock as too old or too new. Applies to spa, syn, encoded, fwknop and rotating (totp) knocks' -r
complete -c knocker -n "__fish_knocker_using_subcommand proxy" -l pass-through -d 'Connect to hosts without a profile, without a knock (default: refuse them)'
complete -c knocker -n "__fish_knocker_using_subcommand proxy" -s v -l verbose -d 'Say on standard error what each request knocked and where it connected'
complete -c knocker -n "__fish_knocker_using_subcommand proxy" -s 4 -l ipv4 -d 'Use an IPv4 address of the host'
complete -c knocker -n "__fish_knocker_using_subcommand proxy" -s 6 -l ipv6 -d 'Use an IPv6 address of the host'
complete -c knocker -n "__fish_knocker_using_subcommand proxy" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c knocker -n "__fish_knocker_using_subcommand proxy" -s V -l version -d 'Print version'
complete -c knocker -n "__fish_knocker_using_subcommand manuals" -l out -r -F
complete -c knocker -n "__fish_knocker_using_subcommand manuals" -s h -l help -d 'Print help'
complete -c knocker -n "__fish_knocker_using_subcommand manuals" -s V -l version -d 'Print version'
complete -c knocker -n "__fish_knocker_using_subcommand help; and not __fish_seen_subcommand_from knock sequence keygen profile spa connect proxy manuals help" -f -a "knock" -d 'Knock on HOST\'s ports, in order, or knock a saved profile'
complete -c knocker -n "__fish_knocker_using_subcommand help; and not __fish_seen_subcommand_from knock sequence keygen profile spa connect proxy manuals help" -f -a "sequence" -d 'Print a profile\'s current knock sequence, for any knock tool'
complete -c knocker -n "__fish_knocker_using_subcommand help; and not __fish_seen_subcommand_from knock sequence keygen profile spa connect proxy manuals help" -f -a "keygen" -d 'Write a new random key to a file (mode 0600): a shared key (--out), or this machine\'s identity for spa and syn profiles (--identity)'
complete -c knocker -n "__fish_knocker_using_subcommand help; and not __fish_seen_subcommand_from knock sequence keygen profile spa connect proxy manuals help" -f -a "profile" -d 'Add, list, show or remove saved profiles'
complete -c knocker -n "__fish_knocker_using_subcommand help; and not __fish_seen_subcommand_from knock sequence keygen profile spa connect proxy manuals help" -f -a "spa" -d 'Send a single packet authorization (SPA) packet: fwknop\'s format, with --fwknop'
complete -c knocker -n "__fish_knocker_using_subcommand help; and not __fish_seen_subcommand_from knock sequence keygen profile spa connect proxy manuals help" -f -a "connect" -d 'Knock (if HOST has a profile), wait until PORT answers, then relay stdin and stdout to it'
complete -c knocker -n "__fish_knocker_using_subcommand help; and not __fish_seen_subcommand_from knock sequence keygen profile spa connect proxy manuals help" -f -a "proxy" -d 'A local SOCKS5 proxy that knocks (with the destination\'s profile) before it connects'
complete -c knocker -n "__fish_knocker_using_subcommand help; and not __fish_seen_subcommand_from knock sequence keygen profile spa connect proxy manuals help" -f -a "manuals" -d 'Write the man pages and shell completions made from this command line to DIR/man and DIR/completions (packaging/ holds the packaged copies, which the tests compare)'
complete -c knocker -n "__fish_knocker_using_subcommand help; and not __fish_seen_subcommand_from knock sequence keygen profile spa connect proxy manuals help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c knocker -n "__fish_knocker_using_subcommand help; and __fish_seen_subcommand_from profile" -f -a "add" -d 'Save a knock sequence as NAME (-u, -d, -4 and -6 are saved with it)'
complete -c knocker -n "__fish_knocker_using_subcommand help; and __fish_seen_subcommand_from profile" -f -a "list" -d 'List saved profiles: name, host and sequence'
complete -c knocker -n "__fish_knocker_using_subcommand help; and __fish_seen_subcommand_from profile" -f -a "show" -d 'Print one profile as it is written in profiles.toml'
complete -c knocker -n "__fish_knocker_using_subcommand help; and __fish_seen_subcommand_from profile" -f -a "remove" -d 'Delete a saved profile'
