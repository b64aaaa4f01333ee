// SPDX-License-Identifier: Apache-2.0

// snapctl: a small grpc-go client of the Snapshots service for the tests.
//
//	snapctl wait ADDR [SECONDS]       until a List call succeeds
//	snapctl transcript ADDR ROOT FILE run a scenario, print normalized JSON
//	snapctl bench ADDR N KEY          N sequential Stat calls, print µs/call
//	snapctl stat ADDR KEY             print the Info as JSON (exit 2 if missing)
//	snapctl bench-ctrd ADDR NS SNAPSHOTTER N PAR
//	                                  Stat latency through containerd's API
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/namespaces"
	ptypes "github.com/gogo/protobuf/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

func dial(addr string) *grpc.ClientConn {
	conn, err := grpc.Dial(addr, grpc.WithInsecure(),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", a)
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		fatal(err)
	}
	return conn
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "snapctl:", err)
	os.Exit(1)
}

// step is one call of a scenario (tests/snapshotter/interop-scenario.json)
type step struct {
	Method  string            `json:"method"`
	Key     string            `json:"key"`
	Parent  string            `json:"parent"`
	Name    string            `json:"name"`
	Labels  map[string]string `json:"labels"`
	Filters []string          `json:"filters"`
	Paths   []string          `json:"paths"`
}

// The shapes below are what python's json_format.MessageToDict prints:
// lowerCamelCase, defaults omitted, int64 as strings, enums by name; the
// timestamps are dropped (they differ run to run) and the root is replaced.
type norm struct{ root string }

func (n norm) path(s string) string { return strings.ReplaceAll(s, n.root, "<root>") }

func (n norm) info(i *snapshotsapi.Info) map[string]interface{} {
	m := map[string]interface{}{}
	if i.Name != "" {
		m["name"] = i.Name
	}
	if i.Parent != "" {
		m["parent"] = i.Parent
	}
	if i.Kind != snapshotsapi.KindUnknown {
		m["kind"] = snapshotsapi.Kind_name[int32(i.Kind)]
	}
	if len(i.Labels) > 0 {
		m["labels"] = i.Labels
	}
	return m
}

func (n norm) mounts(ms []*types.Mount) map[string]interface{} {
	m := map[string]interface{}{}
	var out []interface{}
	for _, x := range ms {
		e := map[string]interface{}{}
		if x.Type != "" {
			e["type"] = x.Type
		}
		if x.Source != "" {
			e["source"] = n.path(x.Source)
		}
		if x.Target != "" {
			e["target"] = x.Target
		}
		if len(x.Options) > 0 {
			var o []interface{}
			for _, s := range x.Options {
				o = append(o, n.path(s))
			}
			e["options"] = o
		}
		out = append(out, e)
	}
	if len(out) > 0 {
		m["mounts"] = out
	}
	return m
}

func run(ctx context.Context, c snapshotsapi.SnapshotsClient, n norm, s step) (map[string]interface{}, error) {
	switch s.Method {
	case "Prepare":
		r, err := c.Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{Key: s.Key, Parent: s.Parent, Labels: s.Labels})
		if err != nil {
			return nil, err
		}
		return n.mounts(r.Mounts), nil
	case "View":
		r, err := c.View(ctx, &snapshotsapi.ViewSnapshotRequest{Key: s.Key, Parent: s.Parent, Labels: s.Labels})
		if err != nil {
			return nil, err
		}
		return n.mounts(r.Mounts), nil
	case "Mounts":
		r, err := c.Mounts(ctx, &snapshotsapi.MountsRequest{Key: s.Key})
		if err != nil {
			return nil, err
		}
		return n.mounts(r.Mounts), nil
	case "Commit":
		_, err := c.Commit(ctx, &snapshotsapi.CommitSnapshotRequest{Key: s.Key, Name: s.Name, Labels: s.Labels})
		return map[string]interface{}{}, err
	case "Remove":
		_, err := c.Remove(ctx, &snapshotsapi.RemoveSnapshotRequest{Key: s.Key})
		return map[string]interface{}{}, err
	case "Cleanup":
		_, err := c.Cleanup(ctx, &snapshotsapi.CleanupRequest{})
		return map[string]interface{}{}, err
	case "Stat":
		r, err := c.Stat(ctx, &snapshotsapi.StatSnapshotRequest{Key: s.Key})
		if err != nil {
			return nil, err
		}
		return map[string]interface{}{"info": n.info(&r.Info)}, nil
	case "Update":
		req := &snapshotsapi.UpdateSnapshotRequest{Info: snapshotsapi.Info{Name: s.Name, Labels: s.Labels}}
		if s.Paths != nil {
			req.UpdateMask = &ptypes.FieldMask{Paths: s.Paths}
		}
		r, err := c.Update(ctx, req)
		if err != nil {
			return nil, err
		}
		return map[string]interface{}{"info": n.info(&r.Info)}, nil
	case "Usage":
		r, err := c.Usage(ctx, &snapshotsapi.UsageRequest{Key: s.Key})
		if err != nil {
			return nil, err
		}
		m := map[string]interface{}{}
		if r.Size_ != 0 {
			m["size"] = strconv.FormatInt(r.Size_, 10)
		}
		if r.Inodes != 0 {
			m["inodes"] = strconv.FormatInt(r.Inodes, 10)
		}
		return m, nil
	case "List":
		st, err := c.List(ctx, &snapshotsapi.ListSnapshotsRequest{Filters: s.Filters})
		if err != nil {
			return nil, err
		}
		var infos []map[string]interface{}
		for {
			r, err := st.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, err
			}
			for i := range r.Info {
				infos = append(infos, n.info(&r.Info[i]))
			}
		}
		sort.Slice(infos, func(a, b int) bool { return infos[a]["name"].(string) < infos[b]["name"].(string) })
		m := map[string]interface{}{}
		if len(infos) > 0 {
			m["info"] = infos
		}
		return m, nil
	}
	return nil, fmt.Errorf("unknown method %q in scenario", s.Method)
}

func transcript(addr, root, file string) {
	b, err := os.ReadFile(file)
	if err != nil {
		fatal(err)
	}
	var steps []step
	if err := json.Unmarshal(b, &steps); err != nil {
		fatal(err)
	}
	conn := dial(addr)
	defer conn.Close()
	c := snapshotsapi.NewSnapshotsClient(conn)
	var out []map[string]interface{}
	for _, s := range steps {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err := run(ctx, c, norm{root}, s)
		cancel()
		st := status.Convert(err)
		e := map[string]interface{}{"method": s.Method, "code": int(st.Code())}
		if err != nil {
			e["message"] = norm{root}.path(st.Message())
		} else {
			e["response"] = resp
		}
		out = append(out, e)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	enc.Encode(out)
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: snapctl wait|transcript|bench|stat ADDR …")
		os.Exit(2)
	}
	addr := os.Args[2]
	switch os.Args[1] {
	case "wait":
		secs := 10
		if len(os.Args) > 3 {
			secs, _ = strconv.Atoi(os.Args[3])
		}
		deadline := time.Now().Add(time.Duration(secs) * time.Second)
		for {
			conn := dial(addr)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			s, err := snapshotsapi.NewSnapshotsClient(conn).List(ctx, &snapshotsapi.ListSnapshotsRequest{})
			if err == nil {
				for err == nil {
					_, err = s.Recv()
				}
				if err == io.EOF {
					err = nil
				}
			}
			cancel()
			conn.Close()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				fatal(fmt.Errorf("%s not serving: %v", addr, err))
			}
			time.Sleep(50 * time.Millisecond)
		}
	case "transcript":
		if len(os.Args) != 5 {
			fatal(fmt.Errorf("transcript ADDR ROOT FILE"))
		}
		transcript(addr, os.Args[3], os.Args[4])
	case "stat":
		conn := dial(addr)
		r, err := snapshotsapi.NewSnapshotsClient(conn).Stat(context.Background(),
			&snapshotsapi.StatSnapshotRequest{Key: os.Args[3]})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		json.NewEncoder(os.Stdout).Encode(r.Info)
	case "bench":
		n, _ := strconv.Atoi(os.Args[3])
		conn := dial(addr)
		c := snapshotsapi.NewSnapshotsClient(conn)
		ctx := context.Background()
		start := time.Now()
		for i := 0; i < n; i++ {
			if _, err := c.Stat(ctx, &snapshotsapi.StatSnapshotRequest{Key: os.Args[4]}); err != nil {
				fatal(err)
			}
		}
		fmt.Printf("%.1f\n", float64(time.Since(start).Microseconds())/float64(n))
	case "bench-ctrd":
		benchContainerd(addr, os.Args[3], os.Args[4], os.Args[5], os.Args[6])
	default:
		fatal(fmt.Errorf("unknown command %q", os.Args[1]))
	}
}

// benchContainerd measures Stat through containerd's Snapshots API (its
// metadata layer, then the snapshotter): N sequential calls, then N calls
// spread over PAR goroutines.
func benchContainerd(addr, ns, snapshotter, ns_, ps string) {
	n, _ := strconv.Atoi(ns_)
	par, _ := strconv.Atoi(ps)
	conn := dial(addr)
	defer conn.Close()
	c := snapshotsapi.NewSnapshotsClient(conn)
	ctx := namespaces.WithNamespace(context.Background(), ns)
	key := fmt.Sprintf("bench-%d", os.Getpid())
	if _, err := c.Prepare(ctx, &snapshotsapi.PrepareSnapshotRequest{Snapshotter: snapshotter, Key: key,
		Labels: map[string]string{"containerd.io/gc.root": "bench"}}); err != nil {
		fatal(err)
	}
	defer c.Remove(ctx, &snapshotsapi.RemoveSnapshotRequest{Snapshotter: snapshotter, Key: key})
	req := &snapshotsapi.StatSnapshotRequest{Snapshotter: snapshotter, Key: key}
	for i := 0; i < 100; i++ { // warm up
		c.Stat(ctx, req)
	}
	lat := make([]time.Duration, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		t := time.Now()
		if _, err := c.Stat(ctx, req); err != nil {
			fatal(err)
		}
		lat[i] = time.Since(t)
	}
	mean := time.Since(start) / time.Duration(n)
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	var wg sync.WaitGroup
	start = time.Now()
	for g := 0; g < par; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n/par; i++ {
				if _, err := c.Stat(ctx, req); err != nil {
					fatal(err)
				}
			}
		}()
	}
	wg.Wait()
	rate := float64(n/par*par) / time.Since(start).Seconds()
	fmt.Printf("%s mean_us=%.1f p50_us=%.1f p99_us=%.1f par%d_calls_per_s=%.0f\n", snapshotter,
		float64(mean.Nanoseconds())/1e3, float64(lat[n/2].Nanoseconds())/1e3,
		float64(lat[n*99/100].Nanoseconds())/1e3, par, rate)
}
