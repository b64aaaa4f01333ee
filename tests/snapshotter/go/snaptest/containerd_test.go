// SPDX-License-Identifier: Apache-2.0

package snaptest

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
)

// The error cases again, through containerd's Snapshots API and its
// metadata layer in front of our proxy plugin (test-containerd.sh sets
// CONTAINERD_ADDRESS, CONTAINERD_NAMESPACE and the plugin name).
func TestViaContainerd(t *testing.T) {
	addr := os.Getenv("CONTAINERD_ADDRESS")
	if addr == "" {
		t.Skip("CONTAINERD_ADDRESS not set (run by test-containerd.sh)")
	}
	conn := dial(t, addr)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ctx = namespaces.WithNamespace(ctx, os.Getenv("CONTAINERD_NAMESPACE"))
	sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), os.Getenv("SNAPSHOTTER"))
	// keep everything from the GC while the test runs
	keep := snapshots.WithLabels(map[string]string{"containerd.io/gc.root": "test"})

	if _, err := sn.Prepare(ctx, "vc-base-a", "", keep); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "vc-base", "vc-base-a", keep); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, "vc-act", "vc-base", keep); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.View(ctx, "vc-view", "vc-base", keep); err != nil {
		t.Fatal(err)
	}
	check := func(name string, err error, is func(error) bool) {
		t.Helper()
		if err == nil || !is(err) {
			t.Errorf("%s: got %v", name, err)
		} else {
			t.Logf("%-28s %v", name, err)
		}
	}
	_, err := sn.Stat(ctx, "vc-nope")
	check("stat missing", err, errdefs.IsNotFound)
	_, err = sn.Prepare(ctx, "vc-act", "", keep)
	check("prepare existing key", err, errdefs.IsAlreadyExists)
	_, err = sn.Prepare(ctx, "vc-x", "vc-nope", keep)
	check("prepare missing parent", err, errdefs.IsNotFound)
	_, err = sn.Prepare(ctx, "vc-y", "vc-act", keep)
	check("prepare on active parent", err, func(e error) bool {
		return errdefs.IsInvalidArgument(e) || errdefs.IsNotFound(e)
	})
	err = sn.Commit(ctx, "vc-n", "vc-view")
	check("commit a view", err, errdefs.IsFailedPrecondition)
	err = sn.Commit(ctx, "vc-n", "vc-nope")
	check("commit missing key", err, errdefs.IsNotFound)
	err = sn.Commit(ctx, "vc-base", "vc-act")
	check("commit existing name", err, errdefs.IsAlreadyExists)
	err = sn.Remove(ctx, "vc-base")
	check("remove with children", err, errdefs.IsFailedPrecondition)
	err = sn.Remove(ctx, "vc-nope")
	check("remove missing", err, errdefs.IsNotFound)
	_, err = sn.Mounts(ctx, "vc-nope")
	check("mounts missing", err, errdefs.IsNotFound)
	_, err = sn.Usage(ctx, "vc-nope")
	check("usage missing", err, errdefs.IsNotFound)
	_, err = sn.Update(ctx, snapshots.Info{Name: "vc-base"}, "parent")
	check("update immutable field", err, errdefs.IsInvalidArgument)
	// containerd parses Walk filters itself (and reports Unknown)
	err = sn.Walk(ctx, func(context.Context, snapshots.Info) error { return nil }, "name==")
	check("walk bad filter", err, func(e error) bool { return e != nil })
	err = sn.(snapshots.Cleaner).Cleanup(ctx)
	check("cleanup (containerd answers)", err, func(e error) bool { return e == nil || errdefs.IsNotImplemented(e) })

	// and the successful paths
	m, err := sn.Mounts(ctx, "vc-act")
	if err != nil || len(m) != 1 || m[0].Type != "overlay" {
		t.Errorf("mounts of vc-act: %v %v", m, err)
	}
	m, err = sn.Mounts(ctx, "vc-view")
	if err != nil || len(m) != 1 || m[0].Type != "bind" || !strings.Contains(strings.Join(m[0].Options, ","), "ro") {
		t.Errorf("mounts of vc-view: %v %v", m, err)
	}
	info, err := sn.Update(ctx, snapshots.Info{Name: "vc-base", Labels: map[string]string{"hello": "world"}}, "labels.hello")
	if err != nil || info.Labels["hello"] != "world" {
		t.Errorf("update: %+v %v", info, err)
	}
	if _, err := sn.Usage(ctx, "vc-base"); err != nil {
		t.Errorf("usage: %v", err)
	}
	n := 0
	err = sn.Walk(ctx, func(_ context.Context, i snapshots.Info) error {
		if strings.HasPrefix(i.Name, "vc-") {
			n++
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Errorf("walk: %d vc- snapshots, %v", n, err)
	}
	for _, k := range []string{"vc-view", "vc-act", "vc-base"} {
		if err := sn.Remove(ctx, k); err != nil {
			t.Errorf("remove %s: %v", k, err)
		}
	}
	if _, err := sn.Stat(ctx, "vc-base"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("stat after remove: %v", err)
	}
}
