// Command refgen writes reference eStargz, legacy stargz and zstd:chunked
// blobs from a tar file, using the upstream estargz library (Debian's
// golang-github-containerd-stargz-snapshotter-dev, 0.12). The formats test
// suite uses it to produce blobs that lazypull must read exactly like the
// upstream reader does.
//
// Usage:
//
//	refgen -format estargz|legacy|zstdchunked [-chunk-size N]
//	       [-prioritized a,b,...] [-mode build|stream]
//	       [-toc-digest FILE] [-toc-json FILE] [-no-verify] IN.tar OUT
//
// -mode build (default) uses estargz.Build: duplicates are removed, a
// landmark entry is added and the layer is written as several sub-streams.
// -mode stream uses the streaming Writer: entries are kept as they are
// (duplicates included), no landmark, so an empty tar gives a TOC with zero
// entries.
//
// The TOC digest is printed to stderr ("toc-digest: sha256:...") and, with
// -toc-digest, written to FILE followed by a newline. -toc-json writes the
// uncompressed TOC JSON exactly as stored in the blob (its sha256 is the TOC
// digest; refgen checks that).
//
// Unless -no-verify is given, the written blob is opened again with the
// upstream reader, its TOC digest and every chunk digest are verified and
// every regular file is read whole, so a broken reference is caught here and
// not blamed on lazypull.
//
// Build offline in GOPATH mode:
//
//	GO111MODULE=off GOPROXY=off GOPATH=$TMP:/usr/share/gocode go build ...
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/containerd/stargz-snapshotter/estargz/zstdchunked"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
)

const (
	footerSize       = 51 // eStargz footer (estargz/types.go FooterSize)
	legacyFooterSize = 47 // CRFS stargz footer
)

// zstdCompression pairs the zstd:chunked compressor and decompressor, which
// estargz.WithCompression takes as one value.
type zstdCompression struct {
	*zstdchunked.Compressor
	*zstdchunked.Decompressor
}

func die(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "refgen: "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	format := flag.String("format", "estargz", "estargz, legacy or zstdchunked")
	chunkSize := flag.Int("chunk-size", 0, "chunk size in bytes (0: library default, 4 MiB)")
	prioritized := flag.String("prioritized", "", "comma-separated prioritized paths (build mode)")
	mode := flag.String("mode", "build", "build (estargz.Build) or stream (estargz.Writer)")
	tocDigestFile := flag.String("toc-digest", "", "also write the TOC digest to this file")
	tocJSONFile := flag.String("toc-json", "", "also write the stored TOC JSON to this file")
	noVerify := flag.Bool("no-verify", false, "do not re-open and verify the written blob")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: refgen [flags] IN.tar OUT")
		flag.PrintDefaults()
		os.Exit(2)
	}
	in, out := flag.Arg(0), flag.Arg(1)

	var zc *zstdCompression
	switch *format {
	case "estargz", "legacy":
	case "zstdchunked":
		zc = &zstdCompression{
			&zstdchunked.Compressor{CompressionLevel: zstd.SpeedDefault},
			new(zstdchunked.Decompressor),
		}
	default:
		die("unknown -format %q", *format)
	}

	var blob []byte
	var tocDigest digest.Digest
	var err error
	switch *mode {
	case "build":
		blob, tocDigest, err = build(in, *chunkSize, *prioritized, zc)
	case "stream":
		if *prioritized != "" {
			die("-prioritized needs -mode build")
		}
		blob, tocDigest, err = stream(in, *chunkSize, zc)
	default:
		die("unknown -mode %q", *mode)
	}
	if err != nil {
		die("%s: %v", in, err)
	}

	if *format == "legacy" {
		blob, err = toLegacy(blob)
		if err != nil {
			die("%s: %v", in, err)
		}
	}

	if !*noVerify {
		if err := verify(blob, tocDigest, zc != nil); err != nil {
			die("%s: written blob does not verify: %v", in, err)
		}
	}

	tocJSON, err := extractTOC(blob, *format)
	if err != nil {
		die("%s: cannot read back the TOC: %v", in, err)
	}
	if digest.FromBytes(tocJSON) != tocDigest {
		die("%s: stored TOC JSON does not hash to the TOC digest", in)
	}
	if *tocJSONFile != "" {
		if err := os.WriteFile(*tocJSONFile, tocJSON, 0o644); err != nil {
			die("%v", err)
		}
	}

	if err := os.WriteFile(out, blob, 0o644); err != nil {
		die("%v", err)
	}
	fmt.Fprintf(os.Stderr, "toc-digest: %s\n", tocDigest)
	if *tocDigestFile != "" {
		if err := os.WriteFile(*tocDigestFile, []byte(tocDigest.String()+"\n"), 0o644); err != nil {
			die("%v", err)
		}
	}
}

func build(in string, chunkSize int, prioritized string, zc *zstdCompression) ([]byte, digest.Digest, error) {
	f, err := os.Open(in)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, "", err
	}
	var opts []estargz.Option
	if chunkSize > 0 {
		opts = append(opts, estargz.WithChunkSize(chunkSize))
	}
	if prioritized != "" {
		opts = append(opts, estargz.WithPrioritizedFiles(strings.Split(prioritized, ",")))
	}
	if zc != nil {
		opts = append(opts, estargz.WithCompression(zc))
	}
	b, err := estargz.Build(io.NewSectionReader(f, 0, st.Size()), opts...)
	if err != nil {
		return nil, "", err
	}
	data, err := io.ReadAll(b)
	if cerr := b.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, "", err
	}
	return data, b.TOCDigest(), nil
}

func stream(in string, chunkSize int, zc *zstdCompression) ([]byte, digest.Digest, error) {
	f, err := os.Open(in)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	var buf bytes.Buffer
	var w *estargz.Writer
	if zc != nil {
		w = estargz.NewWriterWithCompressor(&buf, zc.Compressor)
	} else {
		w = estargz.NewWriter(&buf)
	}
	w.ChunkSize = chunkSize
	if err := w.AppendTar(f); err != nil {
		return nil, "", err
	}
	d, err := w.Close()
	if err != nil {
		return nil, "", err
	}
	return buf.Bytes(), d, nil
}

// toLegacy replaces the 51-byte eStargz footer by the 47-byte CRFS footer.
// The TOC offset stays the same: only the footer shrinks.
func toLegacy(blob []byte) ([]byte, error) {
	if len(blob) < footerSize {
		return nil, errors.New("blob shorter than the eStargz footer")
	}
	foot := blob[len(blob)-footerSize:]
	if string(foot[12:14]) != "SG" || string(foot[32:38]) != "STARGZ" {
		return nil, errors.New("not an eStargz footer")
	}
	hexOff := foot[16:32]
	if _, err := hex.DecodeString(string(hexOff)); err != nil {
		return nil, fmt.Errorf("bad TOC offset in footer: %v", err)
	}

	legacy := make([]byte, 0, legacyFooterSize)
	legacy = append(legacy, 0x1f, 0x8b, 0x08, 0x04) // gzip, deflate, FEXTRA
	legacy = append(legacy, 0, 0, 0, 0)             // MTIME
	legacy = append(legacy, 0x00, 0xff)             // XFL, OS
	legacy = append(legacy, 22, 0)                  // XLEN
	legacy = append(legacy, hexOff...)              // %016x TOC offset
	legacy = append(legacy, "STARGZ"...)
	legacy = append(legacy, 0x01, 0x00, 0x00, 0xff, 0xff) // final empty stored block
	legacy = append(legacy, 0, 0, 0, 0, 0, 0, 0, 0)       // CRC32, ISIZE
	if len(legacy) != legacyFooterSize {
		panic("legacy footer size")
	}

	out := make([]byte, 0, len(blob)-footerSize+legacyFooterSize)
	out = append(out, blob[:len(blob)-footerSize]...)
	return append(out, legacy...), nil
}

// extractTOC returns the TOC JSON stored in blob, located through its footer.
func extractTOC(blob []byte, format string) ([]byte, error) {
	size := int64(len(blob))
	switch format {
	case "estargz", "legacy":
		fsize := int64(footerSize)
		hexAt := int64(16)
		if format == "legacy" {
			fsize, hexAt = legacyFooterSize, 12
		}
		if size < fsize {
			return nil, errors.New("blob shorter than its footer")
		}
		foot := blob[size-fsize:]
		off, err := strconv.ParseInt(string(foot[hexAt:hexAt+16]), 16, 64)
		if err != nil || off < 0 || off > size-fsize {
			return nil, fmt.Errorf("bad TOC offset in footer")
		}
		zr, err := gzip.NewReader(bytes.NewReader(blob[off : size-fsize]))
		if err != nil {
			return nil, err
		}
		zr.Multistream(false)
		tr := tar.NewReader(zr)
		h, err := tr.Next()
		if err != nil {
			return nil, err
		}
		if h.Name != estargz.TOCTarName {
			return nil, fmt.Errorf("first entry of the TOC member is %q", h.Name)
		}
		return io.ReadAll(tr)
	case "zstdchunked":
		const zfooter = 48
		if size < zfooter {
			return nil, errors.New("blob shorter than its footer")
		}
		foot := blob[size-zfooter:]
		off := binary.LittleEndian.Uint64(foot[8:16])
		clen := binary.LittleEndian.Uint64(foot[16:24])
		if off > uint64(size) || clen > uint64(size)-off {
			return nil, errors.New("bad TOC position in footer")
		}
		zr, err := zstd.NewReader(bytes.NewReader(blob[off : off+clen]))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		return io.ReadAll(zr)
	}
	return nil, fmt.Errorf("unknown format %q", format)
}

// verify re-opens blob with the upstream reader and checks the TOC digest,
// every chunk digest and every file's whole-content digest.
func verify(blob []byte, tocDigest digest.Digest, isZstd bool) error {
	sr := io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob)))
	var oopts []estargz.OpenOption
	if isZstd {
		oopts = append(oopts, estargz.WithDecompressors(new(zstdchunked.Decompressor)))
	}
	r, err := estargz.Open(sr, oopts...)
	if err != nil {
		return fmt.Errorf("open: %v", err)
	}
	if r.TOCDigest() != tocDigest {
		return fmt.Errorf("reader TOC digest %s, writer said %s", r.TOCDigest(), tocDigest)
	}
	v, err := r.VerifyTOC(tocDigest)
	if err != nil {
		return fmt.Errorf("VerifyTOC: %v", err)
	}
	root, ok := r.Lookup("")
	if !ok {
		// A TOC with zero entries has no root; nothing more to check.
		return nil
	}
	var walk func(dir string, e *estargz.TOCEntry) error
	walk = func(dir string, e *estargz.TOCEntry) error {
		var ferr error
		e.ForeachChild(func(base string, ent *estargz.TOCEntry) bool {
			p := base
			if dir != "" {
				p = dir + "/" + base
			}
			switch ent.Type {
			case "dir":
				ferr = walk(p, ent)
			case "reg":
				ferr = checkFile(r, v, p, ent)
			}
			return ferr == nil
		})
		return ferr
	}
	return walk("", root)
}

// checkFile reads the file behind ent (reached as p, maybe through a
// hardlink name; chunk lists are keyed by the source entry's name).
func checkFile(r *estargz.Reader, v estargz.TOCEntryVerifier, p string, ent *estargz.TOCEntry) error {
	p = ent.Name
	for off := int64(0); off < ent.Size; {
		ce, ok := r.ChunkEntryForOffset(p, off)
		if !ok {
			return fmt.Errorf("%s: no chunk at %d", p, off)
		}
		cv, err := v.Verifier(ce)
		if err != nil {
			return fmt.Errorf("%s: chunk at %d: %v", p, off, err)
		}
		sr, err := r.OpenFile(p)
		if err != nil {
			return fmt.Errorf("%s: %v", p, err)
		}
		if _, err := io.Copy(cv, io.NewSectionReader(sr, ce.ChunkOffset, ce.ChunkSize)); err != nil {
			return fmt.Errorf("%s: chunk at %d: %v", p, off, err)
		}
		if !cv.Verified() {
			return fmt.Errorf("%s: chunk at %d does not verify", p, off)
		}
		off = ce.ChunkOffset + ce.ChunkSize
	}
	sr, err := r.OpenFile(p)
	if err != nil {
		return fmt.Errorf("%s: %v", p, err)
	}
	h := sha256.New()
	n, err := io.Copy(h, sr)
	if err != nil {
		return fmt.Errorf("%s: read: %v", p, err)
	}
	if n != ent.Size {
		return fmt.Errorf("%s: read %d bytes, size %d", p, n, ent.Size)
	}
	if ent.Digest != "" && ent.Digest != "sha256:"+hex.EncodeToString(h.Sum(nil)) {
		return fmt.Errorf("%s: content digest mismatch", p)
	}
	return nil
}
