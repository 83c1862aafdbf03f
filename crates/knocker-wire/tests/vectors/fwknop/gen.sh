#!/usr/bin/env bash
# Regenerates the fwknop known-answer packets in this directory with Debian's fwknop client
# (fwknop-client 2.6.10). Every run makes new packets (fresh random value, salt and timestamp);
# the tests read each NAME.pkt (here and in shared/) with its NAME.keys (access.conf syntax) and NAME.fields (the
# client's own `-v` dump of what it put in the packet), so regenerated files need no code change.
#
#   usage: ./gen.sh            (run in this directory)
set -euo pipefail
cd "$(dirname "$0")"

# Keys made with `fwknop --key-gen [--hmac-digest-type T] [--key-len N --hmac-key-len M]`.
B64_ENC=1W2Bh/GxHbKIvL2xV+bBG6AWYjHDvsWNzkAzewiinew=
B64_HMAC_SHA256=ZGh1s5LX7t9Rswe+B1S+X0ToYeEpfa/crMFHzs671DzWS297Ik+kxQKBGGmGqG1952CByPKfv/Pxi2Lh5K0TPw==
B64_ENC_512=EC9HASbJjzdIq3DePTn+ulBr5bbs0nEPVtjvJfVyo9c=
B64_HMAC_SHA512=+f8gVXM5t/0GAmVnyU9S0nbUp5VQjDlpfw6dLciHnYrheEjE9GWfZojb2Jyp/AqbKDesvXfdIarDn/gEZPSsradH0XyswmG3A9yehYeMOZFBL5QW27t3T5SkiDZAJ2Ypwz/0RfU5liygzI6aDUbcP2nS5BZ4eYllO1nIbmMch4w=
B64_ENC_384=jIowDIur9MPNn1lPbDmmdd4t49/gNFjC/EApTHQCzaw=
B64_HMAC_SHA384=6qNVnKnPmefvPH7VNrgyJC0UvB+nOCAqfKHyY6uSEGE9J7Kc7hf6Ndu2T7kUNcUoeGHi92axFKTDD4jytIdGD7+3hmWp/nSe54tyAUPFc7UgkKum9Uw3WarjeetZxuAkzUupTdzSY+ZKufKMHB8gj/IrdhYe5AdAdx8PdSKoc/0=
B64_ENC_SHA1=QNUYiMyE4gRXNvzxx1jTQ/8Sgzgvf3R+m14hhSvU/H0=
B64_HMAC_SHA1=2+/G1uXvTnoh+DW7mh7GmniR9V4=
B64_ENC_MD5=36EgB5VIymRYxpxe32qPXX2WpPP0yftHgPZKBk2tV1E=
B64_HMAC_MD5=coBu8BUzbvQeKiBXSjOOWA==
B64_ENC_16=5yTVKI4bAfFHEFprzREaMQ==
B64_HMAC_100=KS3QSCLiCLMWNTXA5DWeVeduCZwsOElSbBCnb9ogqD7B3nT7X6/WpUrzgdgFMbi0VdqxNjDvaazFvZuFpvKgDycF1RFkSlVIh10Mfa/F6hVhNU92+5xPENO3zZ8owTOb7SUJ2g==

TEXT_ENC=correct-horse-battery
TEXT_HMAC=staple-hmac-key-0123456789

# vector NAME USER KEYS-LINES -- fwknop options...
vector() {
    local name=$1 user=$2 keys=$3
    shift 4
    printf '%b' "$keys" > "$name.keys"
    SPOOF_USER=$user fwknop -D 127.0.0.1 --use-hmac -B "$name.pkt" --test --no-save-args \
        --no-rc-file -v "$@" > "$name.log"
    # The first field dump is what the client encoded.
    awk '/^SPA Field Values:/ { n++ }
         n == 1 && /: / { line = $0; sub(/^ +/, "", line); print line }
         n == 1 && /Final SPA Data:/ { exit }' "$name.log" > "$name.fields"
    # fwknopd's replay key, computed by openssl rather than by the code under test.
    printf 'Replay Digest: %s\n' \
        "$(head -c -1 "$name.pkt" | openssl dgst -sha256 -binary | base64 -w0 | tr -d =)" \
        >> "$name.fields"
    rm -f "$name.log"
    { printf '%s: SPOOF_USER=%q fwknop' "$name" "$user"; printf ' %q' "$@"; echo; } >> commands.txt
}

text_keys="KEY $TEXT_ENC\nHMAC_KEY $TEXT_HMAC\n"
text_opts=(--key-rijndael "$TEXT_ENC" --key-hmac "$TEXT_HMAC")
b64() { printf 'KEY_BASE64 %s\nHMAC_KEY_BASE64 %s\nHMAC_DIGEST_TYPE %s\n' "$1" "$2" "$3"; }

rm -f ./*.pkt ./*.keys ./*.fields commands.txt
vector multi_port alice "$text_keys" -- -A tcp/22,udp/53,tcp/8443 -a 192.0.2.7 "${text_opts[@]}"
vector base64_keys root "$(b64 "$B64_ENC" "$B64_HMAC_SHA256" sha256)" -- -A tcp/22 -a 198.51.100.9 \
    --key-base64-rijndael "$B64_ENC" --key-base64-hmac "$B64_HMAC_SHA256"
vector hmac_sha512 bob "$(b64 "$B64_ENC_512" "$B64_HMAC_SHA512" sha512)" -- -A tcp/22 -a 203.0.113.5 \
    --key-base64-rijndael "$B64_ENC_512" --key-base64-hmac "$B64_HMAC_SHA512" --hmac-digest-type sha512
vector hmac_sha384 bob "$(b64 "$B64_ENC_384" "$B64_HMAC_SHA384" sha384)" -- -A udp/1194 -a 203.0.113.5 \
    --key-base64-rijndael "$B64_ENC_384" --key-base64-hmac "$B64_HMAC_SHA384" --hmac-digest-type sha384
vector hmac_sha1 carol "$(b64 "$B64_ENC_SHA1" "$B64_HMAC_SHA1" sha1)" -- -A tcp/22 -a 10.1.2.3 \
    --key-base64-rijndael "$B64_ENC_SHA1" --key-base64-hmac "$B64_HMAC_SHA1" --hmac-digest-type sha1
vector hmac_md5 carol "$(b64 "$B64_ENC_MD5" "$B64_HMAC_MD5" md5)" -- -A tcp/22 -a 10.1.2.3 \
    --key-base64-rijndael "$B64_ENC_MD5" --key-base64-hmac "$B64_HMAC_MD5" --hmac-digest-type md5
vector short_enc_long_hmac dave "$(b64 "$B64_ENC_16" "$B64_HMAC_100" sha256)" -- -A tcp/22 -a 10.9.8.7 \
    --key-base64-rijndael "$B64_ENC_16" --key-base64-hmac "$B64_HMAC_100"
vector client_timeout alice "$text_keys" -- -A tcp/22 -a 192.0.2.7 -f 600 "${text_opts[@]}"
vector source_ip alice "$text_keys" -- -A tcp/22 -s "${text_opts[@]}"
vector digest_md5 alice "$text_keys" -- -A tcp/22 -a 192.0.2.7 -m md5 "${text_opts[@]}"
vector digest_sha1 alice "$text_keys" -- -A tcp/22 -a 192.0.2.7 -m sha1 "${text_opts[@]}"
vector digest_sha384 alice "$text_keys" -- -A tcp/22 -a 192.0.2.7 -m sha384 "${text_opts[@]}"
vector digest_sha512 alice "$text_keys" -- -A tcp/22 -a 192.0.2.7 -m sha512 "${text_opts[@]}"
vector command alice "$text_keys" -- -C 'echo hello > /tmp/x' -a 192.0.2.7 "${text_opts[@]}"
vector nat_access alice "$text_keys" -- -A tcp/2222 -a 192.0.2.7 -N 192.168.10.5:22 "${text_opts[@]}"
vector nat_access_timeout alice "$text_keys" -- -A tcp/2222 -a 192.0.2.7 -N 192.168.10.5:22 -f 90 "${text_opts[@]}"
vector nat_local alice "$text_keys" -- -A tcp/22 -a 192.0.2.7 --nat-local --nat-port 55000 "${text_opts[@]}"
vector nat_local_timeout alice "$text_keys" -- -A tcp/22 -a 192.0.2.7 --nat-local --nat-port 55000 -f 45 "${text_opts[@]}"
vector odd_user 'j.doe-2@example' "$text_keys" -- -A tcp/22 -a 192.0.2.7 "${text_opts[@]}"
vector time_offset alice "$text_keys" -- -A tcp/22 -a 192.0.2.7 --time-offset-minus 1h "${text_opts[@]}"
