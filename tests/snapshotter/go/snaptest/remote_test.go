// SPDX-License-Identifier: Apache-2.0

package snaptest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/stargz-snapshotter/estargz"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Label keys of a layer Prepare, as ctr-remote / containerd send them.
const (
	lRef    = "containerd.io/snapshot.ref"
	lImage  = "containerd.io/snapshot/remote/stargz.reference"
	lDigest = "containerd.io/snapshot/remote/stargz.digest"
	lTOC    = "containerd.io/snapshot/stargz/toc.digest"
	lBlob   = "containerd.io/snapshot/nydus-blob"
	lRemote = "containerd.io/snapshot/remote"
	lLayers = "containerd.io/snapshot/remote/stargz.layers"
)

// fakeRegistry serves the blobs (HEAD and ranged GETs, as docker-registry
// does) and manifests of one repository; everything else is 404.  Manifest
// requests wait manifestDelay.
type fakeRegistry struct {
	addr          string
	repo          string
	digest        string // the first blob's
	blobs         map[string][]byte
	manifests     map[string][]byte // by tag
	manifestDelay int64             // atomic, ns
	srv           *http.Server
}

func sha256Digest(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

func startRegistry(t *testing.T, repo string, blob []byte) *fakeRegistry {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &fakeRegistry{addr: l.Addr().String(), repo: repo,
		digest: sha256Digest(blob), blobs: map[string][]byte{},
		manifests: map[string][]byte{}}
	r.blobs[r.digest] = blob
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
		if q.URL.Path == "/v2/" {
			w.WriteHeader(200)
			return
		}
		pre := "/v2/" + r.repo + "/"
		var body []byte
		ctype := "application/octet-stream"
		if strings.HasPrefix(q.URL.Path, pre+"blobs/") {
			body = r.blobs[strings.TrimPrefix(q.URL.Path, pre+"blobs/")]
		} else if strings.HasPrefix(q.URL.Path, pre+"manifests/") {
			time.Sleep(time.Duration(atomic.LoadInt64(&r.manifestDelay)))
			body = r.manifests[strings.TrimPrefix(q.URL.Path, pre+"manifests/")]
			ctype = "application/vnd.oci.image.manifest.v1+json"
		}
		if body == nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(404)
			io.WriteString(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}`)
			return
		}
		w.Header().Set("Docker-Content-Digest", sha256Digest(body))
		w.Header().Set("Content-Type", ctype)
		http.ServeContent(w, q, "", time.Time{}, bytes.NewReader(body))
	})}
	go r.srv.Serve(l)
	return r
}

func (r *fakeRegistry) stop() { r.srv.Close() }

// stallServer accepts connections and never answers.
type stallServer struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startStall(t *testing.T) *stallServer {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &stallServer{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *stallServer) stop() {
	s.l.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
}

// A port nothing listens on.
func downAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

// An eStargz layer of a few files, and its TOC digest.
func esgzBlob(t *testing.T) ([]byte, string) {
	return esgzLayer(t, "f", "hello\n", strings.Repeat("lazy ", 20000))
}

// An eStargz layer of files <prefix>0, <prefix>1, ... with these bodies.
func esgzLayer(t *testing.T, prefix string, bodies ...string) ([]byte, string) {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for i, body := range bodies {
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("%s%d", prefix, i), Mode: 0644,
			Size: int64(len(body)), Typeflag: tar.TypeReg})
		io.WriteString(tw, body)
	}
	tw.Close()
	raw := tb.Bytes()
	b, err := estargz.Build(io.NewSectionReader(bytes.NewReader(raw), 0, int64(len(raw))))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	blob, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	return blob, b.TOCDigest().String()
}

// Writes the nydusd JSON the snapshotter reads its registry settings from:
// plain http, short timeouts, one retry.
func nydusdConfig(t *testing.T, dir string) string {
	p := filepath.Join(dir, "nydusd.json")
	cfg := `{"device": {"backend": {"type": "registry", "config": {"scheme": "http",
  "timeout": 2, "connect_timeout": 2, "retry_limit": 1}}}, "mode": "direct"}`
	if err := os.WriteFile(p, []byte(cfg), 0600); err != nil {
		t.Fatal(err)
	}
	return p
}

// stillAnswers checks that ordinary calls answer promptly: a Prepare and
// Remove of a plain snapshot, a Stat and a List.
func stillAnswers(t *testing.T, c snapshotsapi.SnapshotsClient, tag string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	t0 := time.Now()
	key := "plain-" + tag
	if _, err := c.Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{Key: key}); err != nil {
		t.Fatalf("%s: then a plain Prepare: %v", tag, err)
	}
	if _, err := c.Stat(ctx, &snapshotsapi.StatSnapshotRequest{Key: key}); err != nil {
		t.Fatalf("%s: then Stat: %v", tag, err)
	}
	lc, err := c.List(ctx, &snapshotsapi.ListSnapshotsRequest{})
	if err != nil {
		t.Fatalf("%s: then List: %v", tag, err)
	}
	for {
		if _, err := lc.Recv(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("%s: then List: %v", tag, err)
		}
	}
	if _, err := c.Remove(ctx, &snapshotsapi.RemoveSnapshotRequest{Key: key}); err != nil {
		t.Fatalf("%s: then Remove: %v", tag, err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("%s: plain Prepare/Stat/List/Remove took %v", tag, d)
	}
}

// layerPrepare is what containerd's unpacker sends for one layer.
func layerPrepare(ctx context.Context, c snapshotsapi.SnapshotsClient, n int,
	labels map[string]string) (codes.Code, string, time.Duration) {
	l := map[string]string{lRef: fmt.Sprintf("sha256:%064x", n)}
	for k, v := range labels {
		l[k] = v
	}
	t0 := time.Now()
	_, err := c.Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{
		Key: fmt.Sprintf("extract-%d sha256:%064x", n, n), Labels: l})
	st, _ := status.FromError(err)
	return st.Code(), st.Message(), time.Since(t0)
}

// Broken labels, unknown images, a lying TOC digest, a registry that is
// down or stalls at Prepare time: every Prepare answers (AlreadyExists for
// a layer served remotely, OK = an ordinary snapshot containerd unpacks,
// or a clear error), in bounded time, and the snapshotter keeps answering.
func TestRemoteFailures(t *testing.T) {
	dir := t.TempDir()
	blob, toc := esgzBlob(t)
	reg := startRegistry(t, "lp/img", blob)
	defer reg.stop()
	stall := startStall(t)
	defer stall.stop()
	down := downAddr(t)

	args := []string{"--enable-stargz", "--enable-zran",
		"--nydusd-config", nydusdConfig(t, dir)}
	lp := os.Getenv("LAZYPULL")
	if lp != "" {
		args = append(args, "--lazypull-path", lp)
	}
	d := startDaemon(t, filepath.Join(dir, "root"), args...)
	defer d.mustStop()
	c := d.client()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	if _, err := c.Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{Key: "anchor"}); err != nil {
		t.Fatal(err)
	}
	img := reg.addr + "/lp/img:1"
	good := map[string]string{lImage: img, lDigest: reg.digest, lTOC: toc}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range good {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return m
	}
	fakeDigest := fmt.Sprintf("sha256:%064x", 12345)
	cases := []struct {
		name   string
		labels map[string]string
		want   codes.Code
		within time.Duration
	}{
		// the control case: a layer served remotely
		{"good eStargz layer", good, codes.AlreadyExists, 5 * time.Second},
		{"no toc label (footer probe)", with(lTOC, ""), codes.AlreadyExists, 5 * time.Second},
		{"digest not a digest", with(lDigest, "sha256:xyz"), codes.OK, 2 * time.Second},
		{"digest of another algorithm", with(lDigest, "md5:d41d8cd98f00b204e9800998ecf8427e"), codes.OK, 2 * time.Second},
		{"digest with a path", with(lDigest, "sha256:../../../etc/passwd"), codes.OK, 2 * time.Second},
		{"digest too long", with(lDigest, reg.digest+strings.Repeat("0", 64)), codes.OK, 2 * time.Second},
		{"toc digest not a digest", with(lTOC, "not-a-digest"), codes.OK, 5 * time.Second},
		{"toc digest lies", with(lTOC, fakeDigest), codes.OK, 5 * time.Second},
		{"garbage reference", with(lImage, ":::not a reference:::"), codes.OK, 2 * time.Second},
		{"reference is an option", with(lImage, "--help"), codes.OK, 2 * time.Second},
		{"reference with control bytes", with(lImage, "reg\x01/x\n:1"), codes.OK, 2 * time.Second},
		{"reference too long", with(lImage, reg.addr+"/"+strings.Repeat("a/", 1500)+"x:1"), codes.OK, 2 * time.Second},
		{"unknown repository", with(lImage, reg.addr+"/lp/none:1"), codes.OK, 5 * time.Second},
		{"unknown blob", with(lDigest, fakeDigest), codes.OK, 5 * time.Second},
		{"registry down", with(lImage, down+"/lp/img:1"), codes.OK, 10 * time.Second},
		// 2 s timeout, one retry: well under containerd's patience
		{"registry stalls", with(lImage, stall.l.Addr().String()+"/lp/img:1"), codes.OK, 20 * time.Second},
		// a nydus data blob needs no registry at Prepare time
		{"nydus blob, garbage labels", map[string]string{lBlob: "true", lImage: "::", lDigest: "x"}, codes.AlreadyExists, 2 * time.Second},
	}
	for i, tc := range cases {
		n := i + 1
		var (
			code  codes.Code
			msg   string
			took  time.Duration
			done  = make(chan struct{})
			slow  time.Duration
			calls int
		)
		go func() {
			code, msg, took = layerPrepare(ctx, c, n, tc.labels)
			close(done)
		}()
		// while it runs, everything else answers at once
	wait:
		for {
			select {
			case <-done:
				break wait
			case <-time.After(200 * time.Millisecond):
				t0 := time.Now()
				statOK(t, c, "anchor")
				if d := time.Since(t0); d > slow {
					slow = d
				}
				calls++
			}
		}
		if code != tc.want {
			t.Errorf("%s: Prepare: %v %q, want %v", tc.name, code, msg, tc.want)
		}
		if took > tc.within {
			t.Errorf("%s: Prepare took %v (want under %v)", tc.name, took, tc.within)
		}
		if slow > time.Second {
			t.Errorf("%s: a Stat during the Prepare took %v", tc.name, slow)
		}
		t.Logf("%-30s %-14v in %6.0f ms (%d Stats meanwhile, slowest %v) %s",
			tc.name, code, float64(took)/1e6, calls, slow.Round(time.Millisecond), msg)
		// an ordinary snapshot was made: containerd would unpack into it
		if code == codes.OK {
			ck := fmt.Sprintf("extract-%d sha256:%064x", n, n)
			if _, err := c.Mounts(ctx, &snapshotsapi.MountsRequest{Key: ck}); err != nil {
				t.Errorf("%s: Mounts of the ordinary snapshot: %v", tc.name, err)
			}
		}
		stillAnswers(t, c, fmt.Sprintf("case%d", n))
	}
	// a fallback after a network or TOC failure is logged with its cause
	text := d.logText()
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, "containerd pulls it") {
			t.Log(l)
		}
	}
	for _, want := range []string{fakeDigest, down, "lp/none"} {
		if !strings.Contains(text, want) {
			t.Errorf("the log does not explain a fallback (%q)", want)
		}
	}

	// the remote layer of case 1, with its registry gone: a snapshot over
	// it needs its fs daemon, which cannot start; the call fails with a
	// message saying why, in bounded time, and nothing wedges
	if lp == "" {
		t.Log("LAZYPULL not set: the fs-daemon cases are skipped")
		return
	}
	ref1 := fmt.Sprintf("sha256:%064x", 1)
	if _, err := c.Stat(ctx, &snapshotsapi.StatSnapshotRequest{Key: ref1}); err != nil {
		t.Fatalf("the remote layer: %v", err)
	}
	reg.stop()
	t0 := time.Now()
	_, err := c.Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{Key: "ctr-over-remote", Parent: ref1})
	st, _ := status.FromError(err)
	t.Logf("Prepare over a remote layer, registry gone: %v %q in %v", st.Code(), st.Message(), time.Since(t0))
	if err == nil {
		t.Errorf("Prepare over a remote layer whose registry is gone succeeded")
	} else if !strings.Contains(st.Message(), "fs daemon") {
		t.Errorf("unclear error: %q", st.Message())
	}
	if time.Since(t0) > 60*time.Second {
		t.Errorf("took %v", time.Since(t0))
	}
	stillAnswers(t, c, "after-daemon-failure")
	// removing the remote layer works, and leaves no mount or daemon
	if _, err := c.Remove(ctx, &snapshotsapi.RemoveSnapshotRequest{Key: ref1}); err != nil {
		t.Errorf("Remove of the remote layer: %v", err)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), filepath.Join(dir, "root", "mnt")) {
		t.Errorf("mounts left under %s", filepath.Join(dir, "root", "mnt"))
	}
}

type esgzLayerRef struct{ digest, toc string }

// esgzImage puts an image of n eStargz layers (layer i holds the file
// l<i>-0 = "layer <i>\n") under tag 1 of reg's repository.
func esgzImage(t *testing.T, reg *fakeRegistry, n int) []esgzLayerRef {
	var layers []esgzLayerRef
	var descs, diffs []string
	for i := 0; i < n; i++ {
		blob, toc := esgzLayer(t, fmt.Sprintf("l%d-", i), fmt.Sprintf("layer %d\n", i))
		d := sha256Digest(blob)
		reg.blobs[d] = blob
		layers = append(layers, esgzLayerRef{d, toc})
		descs = append(descs, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",`+
			`"digest":"%s","size":%d,"annotations":{"%s":"%s"}}`, d, len(blob), lTOC, toc))
		diffs = append(diffs, fmt.Sprintf(`"sha256:%064x"`, i)) // unused by the daemons
	}
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[` +
		strings.Join(diffs, ",") + `]}}`)
	reg.blobs[sha256Digest(cfg)] = cfg
	man := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},`+
		`"layers":[%s]}`, sha256Digest(cfg), len(cfg), strings.Join(descs, ",")))
	reg.manifests["1"] = man
	reg.manifests[sha256Digest(man)] = man
	return layers
}

// The first Prepare of a pull starts the probes of the layers its
// layer-list label names; each later Prepare takes its probe's answer and
// checks the TOC digest the probe read against its own label: a lying
// label still gets an ordinary snapshot (containerd pulls that layer).
func TestRemoteAheadTOC(t *testing.T) {
	lp := os.Getenv("LAZYPULL")
	if lp == "" {
		t.Skip("LAZYPULL is not set")
	}
	const n = 3
	dir := t.TempDir()
	reg := startRegistry(t, "lp/ahead", nil)
	defer reg.stop()
	layers := esgzImage(t, reg, n)
	img := reg.addr + "/lp/ahead:1"
	var list []string
	for _, l := range layers {
		list = append(list, l.digest)
	}
	d := startDaemon(t, filepath.Join(dir, "root"), "--enable-stargz",
		"--nydusd-config", nydusdConfig(t, dir), "--lazypull-path", lp)
	defer d.mustStop()
	c := d.client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lying := fmt.Sprintf("sha256:%064x", 777)
	parent := ""
	for i, l := range layers {
		chain := fmt.Sprintf("sha256:%064x", 200+i)
		toc, want := l.toc, codes.AlreadyExists
		if i == 1 {
			toc, want = lying, codes.OK
		}
		_, err := c.Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{
			Key: "extract-" + chain, Parent: parent, Labels: map[string]string{
				lRef: chain, lImage: img, lDigest: l.digest, lTOC: toc,
				lLayers: strings.Join(list[i:], ",")}})
		if status.Code(err) != want {
			t.Fatalf("layer %d (toc label %s): Prepare: %v (want %v)\n%s",
				i, toc, err, want, d.logText())
		}
		if want == codes.OK {
			break // containerd would unpack it; the test ends here
		}
		parent = chain
	}
	log := d.logText()
	took := "layer " + layers[1].digest + " of " + img + ": answered by the probe started ahead"
	if !strings.Contains(log, took) {
		t.Errorf("layer 1 was not answered by its probe started ahead:\n%s", log)
	}
	if !strings.Contains(log, "does not match the expected "+lying) {
		t.Errorf("no TOC digest mismatch logged for layer 1:\n%s", log)
	}
	// removing the snapshots stops the daemon layer 0's commit started
	c.Remove(ctx, &snapshotsapi.RemoveSnapshotRequest{
		Key: "extract-" + fmt.Sprintf("sha256:%064x", 201)})
	if _, err := c.Remove(ctx, &snapshotsapi.RemoveSnapshotRequest{
		Key: fmt.Sprintf("sha256:%064x", 200)}); err != nil {
		t.Errorf("Remove layer 0: %v", err)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), filepath.Join(dir, "root")) {
		t.Errorf("mounts left under %s", dir)
	}
}

// The fs daemons of one image start in parallel on the first snapshot over
// its layers: with a registry that takes a second to answer a manifest
// request (which every daemon makes), four layers take about one second,
// not four.  The active snapshot's overlay then shows every layer's file.
func TestRemoteParallelStart(t *testing.T) {
	lp := os.Getenv("LAZYPULL")
	if lp == "" {
		t.Skip("LAZYPULL is not set")
	}
	const n = 4
	const delay = time.Second
	dir := t.TempDir()
	reg := startRegistry(t, "lp/par", nil)
	defer reg.stop()
	layers := esgzImage(t, reg, n)
	img := reg.addr + "/lp/par:1"

	d := startDaemon(t, filepath.Join(dir, "root"), "--enable-stargz",
		"--nydusd-config", nydusdConfig(t, dir), "--lazypull-path", lp)
	defer d.mustStop()
	c := d.client()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	parent := ""
	for i, l := range layers {
		chain := fmt.Sprintf("sha256:%064x", 100+i)
		_, err := c.Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{
			Key: "extract-" + chain, Parent: parent, Labels: map[string]string{
				lRef: chain, lImage: img, lDigest: l.digest, lTOC: l.toc}})
		if status.Code(err) != codes.AlreadyExists {
			t.Fatalf("layer %d: Prepare: %v (want AlreadyExists)", i, err)
		}
		parent = chain
	}
	atomic.StoreInt64(&reg.manifestDelay, int64(delay))
	t0 := time.Now()
	resp, err := c.Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{Key: "ctr", Parent: parent})
	took := time.Since(t0)
	if err != nil {
		t.Fatalf("Prepare over %d remote layers: %v\n%s", n, err, d.logText())
	}
	t.Logf("Prepare over %d remote layers (manifest answered after %v): %v", n, delay, took)
	if took > time.Duration(n-1)*delay {
		t.Errorf("the %d fs daemons did not start in parallel: %v", n, took)
	}
	// the overlay shows every layer
	mp := filepath.Join(dir, "mnt")
	os.MkdirAll(mp, 0755)
	m := resp.Mounts[0]
	if err := syscall.Mount(m.Source, mp, m.Type, 0, strings.Join(m.Options, ",")); err != nil {
		t.Fatalf("mount %v: %v", m, err)
	}
	for i := 0; i < n; i++ {
		b, err := os.ReadFile(filepath.Join(mp, fmt.Sprintf("l%d-0", i)))
		if err != nil || string(b) != fmt.Sprintf("layer %d\n", i) {
			t.Errorf("layer %d's file: %q %v", i, b, err)
		}
	}
	syscall.Unmount(mp, 0)
	// removing the snapshots stops the daemons
	c.Remove(ctx, &snapshotsapi.RemoveSnapshotRequest{Key: "ctr"})
	for i := n - 1; i >= 0; i-- {
		if _, err := c.Remove(ctx, &snapshotsapi.RemoveSnapshotRequest{
			Key: fmt.Sprintf("sha256:%064x", 100+i)}); err != nil {
			t.Errorf("Remove layer %d: %v", i, err)
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), filepath.Join(dir, "root")) {
		t.Errorf("mounts left under %s", dir)
	}
}
