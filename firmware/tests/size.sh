#!/bin/sh
# Flash and RAM of an AVR image, from its sections: flash = .text + .data
# (the initial values live in flash), RAM = .data + .bss (+ .noinit).
# Fails when flash is above the limit.  Usage: size.sh ELF LIMIT FLASH RAM
elf=$1 limit=$2 flash_total=$3 ram_total=$4
avr-size -A "$elf" | awk -v limit="$limit" -v ft="$flash_total" -v rt="$ram_total" '
    $1 == ".text" || $1 == ".data" { flash += $2 }
    $1 == ".data" || $1 == ".bss" || $1 == ".noinit" { ram += $2 }
    END {
        printf "flash=%d flash_pct=%.1f flash_limit=%d ram=%d ram_pct=%.1f\n", flash, 100 * flash / ft, limit, ram, 100 * ram / rt
        if (flash > limit) {
            printf "FAIL: flash %d B is above the limit %d B (75 %% of %d)\n", flash, limit, ft > "/dev/stderr"
            exit 1
        }
    }'
