"""How fast the XBee frame codec is: ``python bench/xbee_codec.py``.

Encodes and decodes Receive Packet frames carrying typical board lines, in
API mode 1 and 2, and prints frames per second; the last line sums it up.
A 9600-baud serial line carries at most 960 bytes/s, so the figure to
compare is the codec's throughput against that.
"""

import random

from timing import median_seconds

from jeisson.wire import xbee


def main() -> None:
    rng = random.Random(1)
    lines = [f"MEAS {rng.randint(0, 3000)} {rng.randint(0, 3000)} {rng.randint(0, 3000)}\n".encode()
             for _ in range(2000)]
    frames = [xbee.ReceivePacket(src64=0x0013A20040000000 + rng.randrange(1 << 24), src16=rng.randrange(0xFFFE),
                                 options=1, data=line) for line in lines]
    summary = []
    for escaped in (False, True):
        mode = "api2" if escaped else "api1"
        encode_s = median_seconds(lambda escaped=escaped: [xbee.encode_frame(f, escaped) for f in frames])
        stream = b"".join(xbee.encode_frame(f, escaped) for f in frames)

        def decode(stream=stream, escaped=escaped):
            decoder = xbee.FrameDecoder(escaped=escaped)
            assert len(decoder.feed(stream)) == len(frames)

        decode_s = median_seconds(decode)
        per_encode = encode_s / len(frames) * 1e6
        per_decode = decode_s / len(frames) * 1e6
        rate = len(stream) / decode_s
        print(f"{mode}: encode {per_encode:.1f} us/frame, decode {per_decode:.1f} us/frame, "
              f"decode {rate / 1e6:.2f} MB/s ({rate / 960:.0f} x a 9600-baud line)")
        summary.append(f"{mode}_decode_us={per_decode:.1f} {mode}_encode_us={per_encode:.1f}")
    print(" ".join(summary))


if __name__ == "__main__":
    main()
