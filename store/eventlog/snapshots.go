// The object store of projection snapshots, KYC_SNAPSHOTS (DESIGN.md section 14). What
// it stores is already sealed (Keyring.SealSnapshot): the store itself knows no key.

package eventlog

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go/jetstream"
)

// SnapshotBucket is the object store of projection snapshots; JetStream keeps it in the
// stream OBJ_KYC_SNAPSHOTS, chunks on $O.KYC_SNAPSHOTS.C.<nuid>, each object's
// description on $O.KYC_SNAPSHOTS.M.<name>.
const SnapshotBucket = "KYC_SNAPSHOTS"

const (
	snapshotStream      = "OBJ_" + SnapshotBucket
	snapshotChunks      = "$O." + SnapshotBucket + ".C."
	snapshotNameTimeFmt = "20060102T150405Z"
)

// SnapshotInfo describes one snapshot, as its object's metadata records it.
type SnapshotInfo struct {
	Name       string
	Checkpoint uint64    // the last stream sequence the projection held
	Schema     uint64    // the projection's SchemaVersion
	Version    string    // the kycstate that took it
	Created    time.Time // when it was taken
	Size       int64     // bytes of the projection file
	Digest     string    // SHA-256 of the projection file, hex
	Stored     uint64    // bytes in the object store (sealed), set by List
	// Problem, set by List, says why the metadata cannot be read; such a snapshot is
	// never restored.
	Problem string
}

// snapshotNameRe is a snapshot's name: the checkpoint (20 digits), the time, and a
// random suffix, so that names sort by checkpoint and then time, and each is one token of
// a NATS subject (its key's).
var snapshotNameRe = regexp.MustCompile(`^([0-9]{20})-([0-9]{8}T[0-9]{6}Z)-([0-9a-f]{8})$`)

// NewSnapshotName names a snapshot of the projection at checkpoint taken at created.
func NewSnapshotName(checkpoint uint64, created time.Time) string {
	return fmt.Sprintf("%020d-%s-%s", checkpoint, created.UTC().Format(snapshotNameTimeFmt), randomHex(4))
}

// SnapshotNameCheckpoint reads the checkpoint a snapshot's name carries.
func SnapshotNameCheckpoint(name string) (uint64, bool) {
	m := snapshotNameRe.FindStringSubmatch(name)
	if m == nil {
		return 0, false
	}
	cp, err := strconv.ParseUint(m[1], 10, 64)
	return cp, err == nil
}

// Snapshots is the KYC_SNAPSHOTS object store. Safe for concurrent use.
type Snapshots struct {
	store  jetstream.ObjectStore // nil: the bucket does not exist (and was not to be made)
	stream jetstream.Stream
	js     jetstream.JetStream
}

// OpenSnapshots opens KYC_SNAPSHOTS, creating it with create (file storage, replicas as
// the log's) when it does not exist; without create, a missing bucket lists no snapshot.
// Errors: KindUnavailable.
func OpenSnapshots(ctx context.Context, c *Conn, replicas int, create bool) (*Snapshots, error) {
	const op = "eventlog.OpenSnapshots"
	if c == nil || c.JS == nil {
		return nil, domain.E(op, domain.KindInvalid, "no NATS connection")
	}
	s := &Snapshots{js: c.JS}
	store, err := c.JS.ObjectStore(ctx, SnapshotBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		if !create {
			return s, nil
		}
		store, err = c.JS.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      SnapshotBucket,
			Description: "kycstate projection snapshots, each sealed under a key of its own in KYC_KEYS",
			Storage:     jetstream.FileStorage, Replicas: max(replicas, 1),
		})
		if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			store, err = c.JS.ObjectStore(ctx, SnapshotBucket)
		}
	}
	if err != nil {
		return nil, domain.E(op, domain.KindUnavailable, fmt.Errorf("object store %s: %w", SnapshotBucket, err))
	}
	s.store = store
	if s.stream, err = c.JS.Stream(ctx, snapshotStream); err != nil {
		return nil, domain.E(op, domain.KindUnavailable, fmt.Errorf("stream %s: %w", snapshotStream, err))
	}
	return s, nil
}

// Metadata keys of a snapshot's object.
const (
	metaCheckpoint = "checkpoint"
	metaSchema     = "schema"
	metaVersion    = "kycstate-version"
	metaCreated    = "created"
	metaSize       = "size"
	metaDigest     = "sha256"
)

// Put stores r as the snapshot info describes. The object becomes visible only once its
// description is stored, after every chunk: a Put cut short (a crash) leaves chunks no
// object names, which List never shows and CleanPartial removes. A Put that fails
// otherwise removes what it stored. Errors: KindInvalid for a bad name; r's errors as
// they are; KindUnavailable.
func (s *Snapshots) Put(ctx context.Context, info SnapshotInfo, r io.Reader) error {
	const op = "eventlog.Snapshots.Put"
	if _, ok := SnapshotNameCheckpoint(info.Name); !ok {
		return domain.E(op, domain.KindInvalid, fmt.Sprintf("%q is not a snapshot name", info.Name))
	}
	if s.store == nil {
		return domain.E(op, domain.KindUnavailable, fmt.Sprintf("object store %s was not opened to write", SnapshotBucket))
	}
	meta := jetstream.ObjectMeta{
		Name:        info.Name,
		Description: fmt.Sprintf("projection at sequence %d", info.Checkpoint),
		Metadata: map[string]string{
			metaCheckpoint: strconv.FormatUint(info.Checkpoint, 10),
			metaSchema:     strconv.FormatUint(info.Schema, 10),
			metaVersion:    info.Version,
			metaCreated:    info.Created.UTC().Format(time.RFC3339Nano),
			metaSize:       strconv.FormatInt(info.Size, 10),
			metaDigest:     info.Digest,
		},
	}
	_, err := s.store.Put(ctx, meta, r)
	if err == nil {
		return nil
	}
	// A chunk refused after the description was sent can leave a description that names
	// missing chunks: remove it, on a context of its own since ctx may be what ended.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), defaultRequestTimeout)
	defer cancel()
	if derr := s.store.Delete(dctx, info.Name); derr != nil && !errors.Is(derr, jetstream.ErrObjectNotFound) {
		err = errors.Join(err, fmt.Errorf("removing the partial object: %w", derr))
	}
	if domain.KindOf(err) != domain.KindOther {
		return err
	}
	return domain.E(op, domain.KindUnavailable, err)
}

// List returns every snapshot, newest first (by checkpoint, then time taken). Errors:
// KindUnavailable.
func (s *Snapshots) List(ctx context.Context) ([]SnapshotInfo, error) {
	const op = "eventlog.Snapshots.List"
	if s.store == nil {
		return nil, nil
	}
	objs, err := s.store.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, domain.E(op, domain.KindUnavailable, err)
	}
	out := make([]SnapshotInfo, 0, len(objs))
	for _, o := range objs {
		out = append(out, snapshotInfo(o))
	}
	slices.SortFunc(out, func(a, b SnapshotInfo) int {
		return cmp.Or(cmp.Compare(b.Checkpoint, a.Checkpoint), b.Created.Compare(a.Created), strings.Compare(b.Name, a.Name))
	})
	return out, nil
}

func snapshotInfo(o *jetstream.ObjectInfo) SnapshotInfo {
	info := SnapshotInfo{Name: o.Name, Stored: o.Size}
	md := o.Metadata
	var problems []string
	parse := func(key string, f func(string) error) {
		if err := f(md[key]); err != nil {
			problems = append(problems, key)
		}
	}
	parse(metaCheckpoint, func(v string) (err error) { info.Checkpoint, err = strconv.ParseUint(v, 10, 64); return })
	parse(metaSchema, func(v string) (err error) { info.Schema, err = strconv.ParseUint(v, 10, 64); return })
	parse(metaCreated, func(v string) (err error) { info.Created, err = time.Parse(time.RFC3339Nano, v); return })
	parse(metaSize, func(v string) (err error) { info.Size, err = strconv.ParseInt(v, 10, 64); return })
	parse(metaDigest, func(v string) error {
		if len(v) != 64 || strings.Trim(v, "0123456789abcdef") != "" {
			return errors.New("not a SHA-256")
		}
		info.Digest = v
		return nil
	})
	info.Version = md[metaVersion]
	if cp, ok := SnapshotNameCheckpoint(o.Name); !ok || cp != info.Checkpoint {
		problems = append(problems, "name")
	}
	if len(problems) > 0 {
		info.Problem = "metadata unreadable: " + strings.Join(problems, ", ")
	}
	return info
}

// Open returns a reader of the snapshot's stored (sealed) bytes; reading it to the end
// checks them against the digest JetStream recorded. Errors: KindNotFound for no such
// snapshot; KindUnavailable.
func (s *Snapshots) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	const op = "eventlog.Snapshots.Open"
	if s.store == nil {
		return nil, domain.E(op, domain.KindNotFound, fmt.Sprintf("no snapshot %s: no object store %s", name, SnapshotBucket))
	}
	r, err := s.store.Get(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, domain.E(op, domain.KindNotFound, fmt.Sprintf("no snapshot %s", name))
	}
	if err != nil {
		return nil, domain.E(op, domain.KindUnavailable, err)
	}
	return r, nil
}

// Delete removes the snapshot (its description, then its chunks). Deleting one that is
// not there does nothing. Errors: KindUnavailable.
func (s *Snapshots) Delete(ctx context.Context, name string) error {
	const op = "eventlog.Snapshots.Delete"
	if s.store == nil {
		return nil
	}
	err := s.store.Delete(ctx, name)
	if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return domain.E(op, domain.KindUnavailable, err)
	}
	return nil
}

// CleanPartial purges the chunks no snapshot names: those of a Put cut short, or of a
// Delete cut short between its two steps. It returns how many objects' chunks it purged.
// A Put under way has chunks no snapshot names yet either, so only the holder of the
// snapshot lease, which every writer holds, may call it. Errors: KindUnavailable.
func (s *Snapshots) CleanPartial(ctx context.Context) (int, error) {
	const op = "eventlog.Snapshots.CleanPartial"
	if s.store == nil {
		return 0, nil
	}
	si, err := s.stream.Info(ctx, jetstream.WithSubjectFilter(snapshotChunks+">"))
	if err != nil {
		return 0, domain.E(op, domain.KindUnavailable, err)
	}
	if len(si.State.Subjects) == 0 {
		return 0, nil
	}
	objs, err := s.store.List(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
		return 0, domain.E(op, domain.KindUnavailable, err)
	}
	named := map[string]bool{}
	for _, o := range objs {
		named[snapshotChunks+o.NUID] = true
	}
	n := 0
	for subject := range si.State.Subjects {
		if named[subject] {
			continue
		}
		if err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(subject)); err != nil {
			return n, domain.E(op, domain.KindUnavailable, err)
		}
		n++
	}
	return n, nil
}
