// SPDX-License-Identifier: Apache-2.0

package snaptest

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"syscall"
	"testing"

	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/snapshots"
)

type state struct {
	infos  map[string]snapshots.Info
	mounts map[string][]mount.Mount
	usage  map[string]snapshots.Usage
}

func snapshotState(t *testing.T, sn snapshots.Snapshotter) state {
	ctx := context.Background()
	s := state{map[string]snapshots.Info{}, map[string][]mount.Mount{}, map[string]snapshots.Usage{}}
	err := sn.Walk(ctx, func(_ context.Context, i snapshots.Info) error {
		s.infos[i.Name] = i
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, i := range s.infos {
		if i.Kind != snapshots.KindCommitted {
			m, err := sn.Mounts(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			s.mounts[k] = m
		}
		u, err := sn.Usage(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		s.usage[k] = u
	}
	return s
}

// SIGKILL the snapshotter and start it again: every snapshot, label,
// timestamp, mount and the files are still there, and new ids do not
// collide with old directories.
func TestRestart(t *testing.T) {
	root := t.TempDir()
	d := startDaemon(t, root)
	ctx := context.Background()
	sn := d.snapshotter()
	lbl := snapshots.WithLabels(map[string]string{"containerd.io/gc.root": "x", "k": "v"})

	m, err := sn.Prepare(ctx, "l1-act", "", lbl)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m[0].Source, "hello"), []byte("hi\n"), 0644); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "l1", "l1-act", lbl); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, "l2-act", "l1"); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "l2", "l2-act"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, "container", "l2", lbl); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.View(ctx, "view", "l1"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Update(ctx, snapshots.Info{Name: "l2", Labels: map[string]string{"updated": "yes"}}, "labels.updated"); err != nil {
		t.Fatal(err)
	}
	before := snapshotState(t, sn)
	if len(before.infos) != 4 {
		t.Fatalf("%d snapshots before", len(before.infos))
	}

	for round := 0; round < 3; round++ {
		d.stop(syscall.SIGKILL)
		d.start()
		sn = d.snapshotter()
		after := snapshotState(t, sn)
		if !reflect.DeepEqual(before, after) {
			t.Fatalf("round %d: state changed across SIGKILL:\nbefore %+v\nafter  %+v", round, before, after)
		}
	}
	b, err := os.ReadFile(filepath.Join(before.mounts["view"][0].Source, "hello"))
	if err != nil || string(b) != "hi\n" {
		t.Fatalf("file in l1 after restarts: %q %v", b, err)
	}

	// keep working: new snapshots get fresh ids, old ones stay intact
	m, err = sn.Prepare(ctx, "after-act", "l2")
	if err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "after", "after-act"); err != nil {
		t.Fatal(err)
	}
	if err := sn.Remove(ctx, "container"); err != nil {
		t.Fatal(err)
	}
	final := snapshotState(t, sn)
	var names []string
	for k := range final.infos {
		names = append(names, k)
	}
	sort.Strings(names)
	if !reflect.DeepEqual(names, []string{"after", "l1", "l2", "view"}) {
		t.Fatalf("after more work: %v", names)
	}
	if final.infos["l1"].Created != before.infos["l1"].Created ||
		final.infos["l2"].Labels["updated"] != "yes" {
		t.Fatal("old snapshots changed")
	}

	// SIGTERM is a clean stop that removes the socket
	if err := d.stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.sock); !os.IsNotExist(err) {
		t.Errorf("socket left after SIGTERM: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(root, "snapshots")); err != nil || fi.Mode().Perm() != 0700 {
		t.Errorf("snapshots dir: %v %v", fi.Mode(), err)
	}
}
