// SPDX-License-Identifier: Apache-2.0

package snaptest

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func statOK(t *testing.T, c snapshotsapi.SnapshotsClient, key string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := c.Stat(ctx, &snapshotsapi.StatSnapshotRequest{Key: key}); err != nil {
		t.Fatalf("server stopped answering: Stat(%s): %v", key, err)
	}
	return time.Since(start)
}

// fill makes n committed snapshots, each with labels of about `per` bytes.
func fill(t *testing.T, c snapshotsapi.SnapshotsClient, n, per int) {
	ctx := context.Background()
	val := strings.Repeat("v", 3000)
	for i := 0; i < n; i++ {
		labels := map[string]string{}
		for k := 0; k*3000 < per; k++ {
			labels[fmt.Sprintf("label-%d", k)] = val
		}
		key := fmt.Sprintf("snap-%05d-act", i)
		if _, err := c.Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{Key: key}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Commit(ctx, &snapshotsapi.CommitSnapshotRequest{Key: key,
			Name: fmt.Sprintf("snap-%05d", i), Labels: labels}); err != nil {
			t.Fatal(err)
		}
	}
}

// The server stays up and keeps answering through garbage, HTTP/1,
// cancelled and oversized calls, deadlines and 200 connections.
func TestAbuse(t *testing.T) {
	d := startDaemon(t, t.TempDir())
	defer func() {
		if err := d.stop(syscall.SIGTERM); err != nil {
			t.Error(err)
		}
	}()
	c := d.client()
	fill(t, c, 400, 9000) // about 3.6 MB of List output
	statOK(t, c, "snap-00000")

	// raw bytes on the socket
	for name, b := range map[string][]byte{
		"garbage":          []byte("\x00\x01\x02garbage\xff\xfe" + strings.Repeat("z", 5000)),
		"http1":            []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"truncated preface": []byte("PRI * HTTP/2.0\r\n"),
		"junk frame":       append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 4, 0xff, 0, 0, 0, 0, 1, 1, 2, 3, 4),
		"bad settings":     append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 5, 4, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5),
	} {
		conn, err := net.Dial("unix", d.sock)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write(b)
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		io.Copy(io.Discard, conn) // the server closes, maybe after a GOAWAY
		conn.Close()
		statOK(t, c, "snap-00000")
		t.Logf("%s: closed, still serving", name)
	}

	// a full List works and arrives in several messages
	s, err := c.List(context.Background(), &snapshotsapi.ListSnapshotsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	msgs, infos := 0, 0
	for {
		r, err := s.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		msgs++
		infos += len(r.Info)
	}
	if infos != 400 || msgs < 4 {
		t.Fatalf("List: %d infos in %d messages", infos, msgs)
	}
	t.Logf("List: %d infos in %d messages", infos, msgs)

	// 16 Lists cancelled after their first message, and 16 that hit a
	// 5 ms deadline, while Stat keeps its latency
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var ctx context.Context
			var cancel context.CancelFunc
			if i%2 == 0 {
				ctx, cancel = context.WithCancel(context.Background())
			} else {
				ctx, cancel = context.WithTimeout(context.Background(), 5*time.Millisecond)
			}
			defer cancel()
			s, err := c.List(ctx, &snapshotsapi.ListSnapshotsRequest{})
			if err != nil {
				return
			}
			s.Recv()
			cancel()
			for {
				if _, err := s.Recv(); err != nil {
					return
				}
			}
		}(i)
	}
	var worst time.Duration
	for i := 0; i < 50; i++ {
		if l := statOK(t, c, "snap-00001"); l > worst {
			worst = l
		}
	}
	wg.Wait()
	t.Logf("Stat during 32 cancelled Lists: worst %v", worst)
	if worst > time.Second {
		t.Errorf("Stat took %v while Lists were cancelled", worst)
	}

	// oversized request, from a client allowed to send it
	big := dial(t, d.sock)
	_, err = rawCall(context.Background(), big, "Stat", make([]byte, 17<<20))
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("17 MiB request: %v", err)
	}
	big.Close()
	big, err = grpc.Dial(d.sock, grpc.WithInsecure(),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", a)
		}), grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = rawCall(context.Background(), big, "Stat", make([]byte, 17<<20))
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("17 MiB request: %v", err)
	} else {
		t.Logf("17 MiB request: %v", status.Convert(err).Message())
	}
	// a 2 MB request is fine
	labels := map[string]string{}
	for i := 0; i < 700; i++ {
		labels[fmt.Sprintf("l%04d", i)] = strings.Repeat("y", 3000)
	}
	if _, err := c.Prepare(context.Background(), &snapshotsapi.PrepareSnapshotRequest{Key: "big-labels", Labels: labels}); err != nil {
		t.Errorf("2 MB Prepare: %v", err)
	}
	big.Close()

	// 200 concurrent connections x 20 Stat
	errs := make(chan error, 200)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			conn := dial(t, d.sock)
			defer conn.Close()
			cl := snapshotsapi.NewSnapshotsClient(conn)
			for k := 0; k < 20; k++ {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				_, err := cl.Stat(ctx, &snapshotsapi.StatSnapshotRequest{Key: fmt.Sprintf("snap-%05d", (i+k)%400)})
				cancel()
				if err != nil {
					errs <- err
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("200 connections: %v", err)
	}
	statOK(t, c, "snap-00000")
}

// A handler that blocks (Usage walking a large tree) never stalls the
// metadata calls: they run on another pool.
func TestBlockingHandlers(t *testing.T) {
	root := t.TempDir()
	d := startDaemon(t, root)
	defer d.mustStop()
	c := d.client()
	ctx := context.Background()
	resp, err := c.Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{Key: "tree"})
	if err != nil {
		t.Fatal(err)
	}
	fsdir := resp.Mounts[0].Source
	for i := 0; i < 200; i++ {
		dir := filepath.Join(fsdir, fmt.Sprintf("d%03d", i))
		os.Mkdir(dir, 0755)
		for k := 0; k < 200; k++ {
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", k)), []byte("x"), 0644)
		}
	}
	drop := func() { os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0) }
	drop()
	start := time.Now()
	u, err := c.Usage(ctx, &snapshotsapi.UsageRequest{Key: "tree"})
	if err != nil {
		t.Fatal(err)
	}
	one := time.Since(start)
	if u.Inodes != 200*200+200+1 {
		t.Errorf("usage: %d inodes", u.Inodes)
	}
	t.Logf("one Usage of %d inodes: %v", u.Inodes, one)

	// 12 Usage calls at once (more than the slow pool's base threads)
	drop()
	var wg sync.WaitGroup
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Usage(ctx, &snapshotsapi.UsageRequest{Key: "tree"}); err != nil {
				t.Error(err)
			}
		}()
	}
	time.Sleep(5 * time.Millisecond)
	var worst time.Duration
	n := 0
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for finished := false; !finished; n++ {
		if l := statOK(t, c, "tree"); l > worst {
			worst = l
		}
		select {
		case <-done:
			finished = true
		default:
		}
	}
	total := time.Since(start)
	t.Logf("Stat while 12 Usage ran: %d calls, worst %v (Usage batch %v)", n, worst, total)
	if worst > 250*time.Millisecond {
		t.Errorf("Stat stalled for %v behind blocking handlers", worst)
	}
}

func rssAnonKB(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "RssAnon:") {
			var kb int
			fmt.Sscanf(strings.TrimSpace(l[8:]), "%d", &kb)
			return kb
		}
	}
	t.Fatal("no RssAnon")
	return 0
}

// A List the client reads slowly is produced only as fast as it is taken:
// the server's anonymous memory grows by far less than the listing.
func TestListBackpressure(t *testing.T) {
	d := startDaemon(t, t.TempDir())
	defer d.mustStop()
	c := d.client()
	fill(t, c, 600, 30000) // about 18 MB of List output
	before := rssAnonKB(t, d.cmd.Process.Pid)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := c.List(ctx, &snapshotsapi.ListSnapshotsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the client stalls
	stalled := rssAnonKB(t, d.cmd.Process.Pid)
	n := 1
	for {
		if _, err := s.Recv(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
	}
	t.Logf("18 MB List in %d messages; server RssAnon %d kB before, %d kB while the client stalled",
		n, before, stalled)
	if sanitized(t) {
		t.Log("sanitizer build (freed memory stays in quarantine): not judging RSS")
	} else if stalled-before > 8<<10 {
		t.Errorf("server buffered %d kB for a stalled List", stalled-before)
	}
}

// sanitized tells whether the snapshotter binary was built with ASan.
func sanitized(t *testing.T) bool {
	b, err := os.ReadFile(binary(t))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), "AddressSanitizer")
}
