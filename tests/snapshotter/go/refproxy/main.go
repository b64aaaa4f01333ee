// SPDX-License-Identifier: Apache-2.0

// refproxy: the reference proxy snapshotter for bench/snapshotter-stat.sh,
// containerd's own overlayfs snapshotter (snapshots/overlay, with
// AsynchronousRemove as containerd's built-in plugin) served through
// containerd's contrib/snapshotservice on a unix socket by grpc-go: what
// a proxy snapshotter costs when its server side is containerd's own code.
//
//	refproxy --root DIR --address SOCKET
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/containerd/snapshots/overlay"
	"google.golang.org/grpc"
)

func main() {
	root := flag.String("root", "", "snapshotter root directory")
	address := flag.String("address", "", "unix socket to serve on")
	flag.Parse()
	if *root == "" || *address == "" {
		fmt.Fprintln(os.Stderr, "usage: refproxy --root DIR --address SOCKET")
		os.Exit(2)
	}
	sn, err := overlay.NewSnapshotter(*root, overlay.AsynchronousRemove)
	if err != nil {
		fatal(err)
	}
	rpc := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(rpc, snapshotservice.FromSnapshotter(sn))

	os.Remove(*address)
	l, err := net.Listen("unix", *address)
	if err != nil {
		fatal(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		rpc.GracefulStop()
	}()
	if err := rpc.Serve(l); err != nil {
		fatal(err)
	}
	sn.Close()
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "refproxy:", err)
	os.Exit(1)
}
