#!/bin/sh
# Regenerates the sample recordings of the README quick start with the Debian text-to-speech
# engines: 16 kHz mono 16-bit WAV, a little silence around each phrase.
# Needs espeak-ng, flite and sox. Run from anywhere: ./samples/make_samples.sh
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# say ENGINE VOICE TEXT OUT: synthesize TEXT, then resample, pad and normalize it into OUT.
say() {
    case "$1" in
        espeak) espeak-ng -v "$2" -s 150 -w "$tmp/raw.wav" "$3" ;;
        flite) flite -voice "$2" -t "$3" -o "$tmp/raw.wav" ;;
    esac
    sox -D "$tmp/raw.wav" -r 16000 -c 1 -b 16 "$4" pad 0.3 0.3 norm -3
}

say espeak en-us "yes" yes.wav
say flite slt "stop" stop.wav
say flite kal "turn on the light" turn_on_the_light.wav
say espeak en-us "go back" go_back.wav
# Not in commands.txt: the recognizer should reject it rather than force a command.
say flite awb "banana" banana.wav
