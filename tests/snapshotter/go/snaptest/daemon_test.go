// SPDX-License-Identifier: Apache-2.0

// Package snaptest drives lazypull-snapshotter with containerd's own client
// stack (grpc-go, the snapshots proxy, errdefs) and containerd's snapshotter
// conformance suite.  Built offline in GOPATH mode from Debian's Go sources
// by tests/snapshotter/run-go.sh.
package snaptest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"google.golang.org/grpc"
)

// daemon is one lazypull-snapshotter process started by a test.
type daemon struct {
	t    testing.TB
	root string
	sock string
	cmd  *exec.Cmd
	conn *grpc.ClientConn
	log  *os.File
}

func binary(t testing.TB) string {
	b := os.Getenv("LAZYPULL_SNAPSHOTTER")
	if b == "" {
		t.Fatal("LAZYPULL_SNAPSHOTTER is not set")
	}
	return b
}

// startDaemon runs the snapshotter on root (socket inside it) and dials it
// the way containerd dials a proxy plugin.
func startDaemon(t testing.TB, root string, extra ...string) *daemon {
	d := &daemon{t: t, root: root, sock: filepath.Join(root, "s.sock")}
	d.start(extra...)
	return d
}

func (d *daemon) start(extra ...string) {
	t := d.t
	if err := os.MkdirAll(d.root, 0700); err != nil {
		t.Fatal(err)
	}
	lf, err := os.OpenFile(filepath.Join(d.root, "daemon.log"),
		os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0600)
	if err != nil {
		t.Fatal(err)
	}
	d.log = lf
	args := append([]string{"--root", d.root, "--address", d.sock,
		"--log-to-stdout", "--log-level", "debug"}, extra...)
	d.cmd = exec.Command(binary(t), args...)
	d.cmd.Stdout = lf
	d.cmd.Stderr = lf
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", d.sock)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshotter did not come up on %s: %v", d.sock, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.conn = dial(t, d.sock)
}

func dial(t testing.TB, sock string) *grpc.ClientConn {
	// as containerd 1.6 dials proxy plugins (services/server/server.go)
	conn, err := grpc.Dial(sock,
		grpc.WithInsecure(),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", addr)
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(16<<20)),
	)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func (d *daemon) client() snapshotsapi.SnapshotsClient {
	return snapshotsapi.NewSnapshotsClient(d.conn)
}

func (d *daemon) snapshotter() snapshots.Snapshotter {
	return proxy.NewSnapshotter(d.client(), "nydus")
}

// stop sends sig and waits; SIGTERM must end the process cleanly (exit 0).
func (d *daemon) stop(sig syscall.Signal) error {
	if d.conn != nil {
		d.conn.Close()
		d.conn = nil
	}
	if d.cmd == nil {
		return nil
	}
	d.cmd.Process.Signal(sig)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(15 * time.Second):
		d.cmd.Process.Kill()
		<-done
		err = fmt.Errorf("snapshotter did not stop on %v", sig)
	}
	d.cmd = nil
	d.log.Close()
	if sig == syscall.SIGKILL {
		return nil
	}
	return err
}

func (d *daemon) logText() string {
	b, _ := os.ReadFile(filepath.Join(d.root, "daemon.log"))
	return string(b)
}

// mustStop is a SIGTERM stop that fails the test when the process did not
// exit 0 (a sanitizer report or a leak makes it exit non-zero).
func (d *daemon) mustStop() {
	if err := d.stop(syscall.SIGTERM); err != nil {
		d.t.Errorf("snapshotter exit: %v\n%s", err, d.logText())
	}
}
