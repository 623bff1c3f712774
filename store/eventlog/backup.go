package eventlog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// Stream backups (DESIGN.md section 14) go through JetStream's own snapshot API, the one
// `nats stream backup` and `nats stream restore` use, spoken directly over the JetStream
// API subjects ($JS.API.STREAM.SNAPSHOT.<stream>, $JS.API.STREAM.RESTORE.<stream>):
// a directory per stream holding backup.json ({config, state}) and stream.arc.s2 (the
// server's archive, s2-compressed, NATSARC1 from server 2.15 on), so either tool restores
// what the other wrote. The archive holds the stream's messages, not its block files: a
// message deleted (securely or not) before the snapshot is not in it.

// Files of a stream backup directory, named as `nats stream backup` names them for a 2.15
// server.
const (
	BackupMetaFile    = "backup.json"
	BackupArchiveFile = "stream.arc.s2"
)

// Tuning of the snapshot transfer.
const (
	snapshotChunk = 128 << 10
	restoreChunk  = 64 << 10
	// snapshotIdle bounds the wait for the next chunk: the server gives up after 5 s
	// without an ack, so a longer silence is a lost transfer.
	snapshotIdle = 30 * time.Second
	// restoreFinish bounds the server's work after the last chunk: it stores every
	// message of the archive before it answers.
	restoreFinish = time.Hour
)

// StreamBackup describes one stream's backup.
type StreamBackup struct {
	Stream   string `json:"stream"`
	Messages uint64 `json:"messages"`
	FirstSeq uint64 `json:"firstSeq"`
	LastSeq  uint64 `json:"lastSeq"`
	Bytes    uint64 `json:"bytes"`
	// Size and SHA256 are the archive file's, checked before a restore sends it.
	Size   int64  `json:"archiveSize"`
	SHA256 string `json:"archiveSha256"`
}

// BackupStream writes a snapshot of stream into dir (created; it must not hold a backup
// already): the archive, fsynced, then backup.json, whose presence marks the backup
// complete. The server checks every message's checksum before it sends anything, so a
// damaged stream is refused rather than backed up. Errors: KindNotFound when the server
// has no such stream, KindConflict when dir holds a backup, KindUnavailable when the
// transfer fails (nothing complete is left in dir then).
func BackupStream(ctx context.Context, c *Conn, stream, dir string) (StreamBackup, error) {
	const op = "eventlog.BackupStream"
	meta := filepath.Join(dir, BackupMetaFile)
	if _, err := os.Stat(meta); err == nil {
		return StreamBackup{}, domain.E(op, domain.KindConflict, fmt.Sprintf("%s already holds a backup", dir))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return StreamBackup{}, domain.E(op, domain.KindInvalid, err)
	}
	archive := filepath.Join(dir, BackupArchiveFile)
	f, err := os.OpenFile(archive, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return StreamBackup{}, domain.E(op, domain.KindInvalid, err)
	}
	h := sha256.New()
	resp, size, err := snapshotTo(ctx, c, stream, io.MultiWriter(f, h))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(archive)
		if domain.KindOf(err) != domain.KindOther {
			return StreamBackup{}, err
		}
		return StreamBackup{}, domain.E(op, domain.KindUnavailable, fmt.Errorf("snapshot of %s: %w", stream, err))
	}
	mj, err := json.MarshalIndent(server.JSApiStreamRestoreRequest{Config: *resp.Config, State: *resp.State}, "", "  ")
	if err != nil {
		return StreamBackup{}, domain.E(op, domain.KindInternal, err)
	}
	if err := writeFileSync(meta, mj); err != nil {
		os.Remove(archive)
		return StreamBackup{}, domain.E(op, domain.KindUnavailable, err)
	}
	st := resp.State
	return StreamBackup{Stream: stream, Messages: st.Msgs, FirstSeq: st.FirstSeq, LastSeq: st.LastSeq,
		Bytes: st.Bytes, Size: size, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// snapshotTo asks the server for stream's snapshot and copies its chunks to w in order,
// acknowledging each (the server keeps a window of unacknowledged chunks in flight).
func snapshotTo(ctx context.Context, c *Conn, stream string, w io.Writer) (*server.JSApiStreamSnapshotResponse, int64, error) {
	const op = "eventlog.BackupStream"
	inbox := c.NC.NewRespInbox()
	// A synchronous subscription with no pending limit: a chan subscription drops
	// messages when its channel is full, and a lost chunk is a broken backup. The
	// server's window bounds what can pile up.
	sub, err := c.NC.SubscribeSync(inbox)
	if err != nil {
		return nil, 0, err
	}
	defer sub.Unsubscribe()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, 0, err
	}
	req, _ := json.Marshal(server.JSApiStreamSnapshotRequest{
		DeliverSubject: inbox, NoConsumers: true, ChunkSize: snapshotChunk, CheckMsgs: true,
	})
	var resp server.JSApiStreamSnapshotResponse
	if err := apiRequest(ctx, c, fmt.Sprintf(server.JSApiStreamSnapshotT, stream), req, &resp); err != nil {
		return nil, 0, err
	}
	if resp.Error != nil {
		kind := domain.KindUnavailable
		if resp.Error.ErrCode == uint16(jetstream.JSErrCodeStreamNotFound) {
			kind = domain.KindNotFound
		}
		return nil, 0, domain.E(op, kind, fmt.Errorf("snapshot of %s: %s", stream, resp.Error.Description))
	}
	if resp.Config == nil || resp.State == nil {
		return nil, 0, domain.E(op, domain.KindUnavailable, fmt.Sprintf("snapshot of %s: the server sent no stream state", stream))
	}
	var size int64
	for {
		mctx, cancel := context.WithTimeout(ctx, snapshotIdle)
		m, err := sub.NextMsgWithContext(mctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, 0, ctx.Err()
			}
			return nil, 0, fmt.Errorf("waiting for chunk after %d bytes: %w", size, err)
		}
		if len(m.Data) == 0 {
			// The end: status 204 (or none, for a stream smaller than one chunk), else
			// the server's reason for stopping.
			if s := m.Header.Get("Status"); s != "" && s != "204" {
				return nil, 0, fmt.Errorf("the server stopped the snapshot: %s %s", s, m.Header.Get("Description"))
			}
			return &resp, size, nil
		}
		// Acknowledge first: the chunk is in memory, and a slow disk must not run out
		// the server's flow-control timeout.
		if m.Reply != "" {
			if err := m.Respond(nil); err != nil {
				return nil, 0, err
			}
		}
		n, err := w.Write(m.Data)
		size += int64(n)
		if err != nil {
			return nil, 0, err
		}
	}
}

// RestoreStream restores the stream backed up in dir into the server at c, which must
// not have a stream of that name. wantSHA256, when not empty, is the archive's expected
// hash (from the backup's manifest), checked before anything is sent. replicas, when
// above 0, replaces the backup's replica count (an embedded server's backup restored into
// a cluster). A backup taken from a mirror (a standby) is restored as a stream of its
// own, taking subjects: the mirror's origin is not this server's business.
//
// Errors: KindConflict when the stream exists, KindInvalid when dir is not a complete
// backup of that stream or its archive does not match wantSHA256, KindUnavailable when
// the server refuses or the transfer fails.
func RestoreStream(ctx context.Context, c *Conn, stream, dir, wantSHA256 string, subjects []string, replicas int) (StreamBackup, error) {
	const op = "eventlog.RestoreStream"
	mj, err := os.ReadFile(filepath.Join(dir, BackupMetaFile))
	if err != nil {
		return StreamBackup{}, domain.E(op, domain.KindInvalid, fmt.Errorf("%s is not a complete stream backup: %w", dir, err))
	}
	var req server.JSApiStreamRestoreRequest
	if err := json.Unmarshal(mj, &req); err != nil {
		return StreamBackup{}, domain.E(op, domain.KindInvalid, fmt.Errorf("%s: %w", filepath.Join(dir, BackupMetaFile), err))
	}
	if req.Config.Name != stream {
		return StreamBackup{}, domain.E(op, domain.KindInvalid, fmt.Sprintf("%s holds a backup of %q, not of %s", dir, req.Config.Name, stream))
	}
	archive := filepath.Join(dir, BackupArchiveFile)
	sum, size, err := hashFile(archive)
	if err != nil {
		return StreamBackup{}, domain.E(op, domain.KindInvalid, fmt.Errorf("%s is not a complete stream backup: %w", dir, err))
	}
	if wantSHA256 != "" && sum != wantSHA256 {
		return StreamBackup{}, domain.E(op, domain.KindInvalid, fmt.Sprintf("%s does not match the backup's manifest (sha256 %s, want %s): the backup is damaged", archive, sum, wantSHA256))
	}
	if req.Config.Mirror != nil || len(req.Config.Sources) > 0 {
		req.Config.Mirror, req.Config.Sources = nil, nil
		req.Config.Subjects = subjects
	}
	if replicas > 0 {
		req.Config.Replicas = replicas
	}
	if exists, _, err := streamState(ctx, c, stream); err != nil {
		return StreamBackup{}, domain.E(op, domain.KindUnavailable, err)
	} else if exists {
		return StreamBackup{}, domain.E(op, domain.KindConflict, fmt.Sprintf("the server already has a stream %s: a restore goes into a server that has none", stream))
	}
	body, _ := json.Marshal(req)
	var resp server.JSApiStreamRestoreResponse
	if err := apiRequest(ctx, c, fmt.Sprintf(server.JSApiStreamRestoreT, stream), body, &resp); err != nil {
		return StreamBackup{}, domain.E(op, domain.KindUnavailable, err)
	}
	if resp.Error != nil {
		kind := domain.KindUnavailable
		if resp.Error.ErrCode == uint16(jetstream.JSErrCodeStreamNameInUse) || resp.Error.ErrCode == uint16(server.JSStreamNameExistRestoreFailedErr) {
			kind = domain.KindConflict
		}
		return StreamBackup{}, domain.E(op, kind, fmt.Errorf("restore of %s: %s", stream, resp.Error.Description))
	}
	if err := sendArchive(ctx, c, archive, resp.DeliverSubject); err != nil {
		return StreamBackup{}, domain.E(op, domain.KindUnavailable, fmt.Errorf("restore of %s: %w", stream, err))
	}
	fctx, cancel := context.WithTimeout(ctx, restoreFinish)
	defer cancel()
	m, err := c.NC.RequestWithContext(fctx, resp.DeliverSubject, nil)
	if err != nil {
		return StreamBackup{}, domain.E(op, domain.KindUnavailable, fmt.Errorf("restore of %s: waiting for the server to store it: %w", stream, err))
	}
	var done server.JSApiStreamCreateResponse
	if err := json.Unmarshal(m.Data, &done); err != nil {
		return StreamBackup{}, domain.E(op, domain.KindUnavailable, fmt.Errorf("restore of %s: %w", stream, err))
	}
	if done.Error != nil || done.StreamInfo == nil {
		desc := "no stream info"
		if done.Error != nil {
			desc = done.Error.Description
		}
		return StreamBackup{}, domain.E(op, domain.KindUnavailable, fmt.Errorf("restore of %s: %s", stream, desc))
	}
	st := done.State
	return StreamBackup{Stream: stream, Messages: st.Msgs, FirstSeq: st.FirstSeq, LastSeq: st.LastSeq,
		Bytes: st.Bytes, Size: size, SHA256: sum}, nil
}

// sendArchive sends the archive in chunks, each as a request the server answers once it
// has taken it (an empty answer) or refused it (an error response).
func sendArchive(ctx context.Context, c *Conn, archive, deliver string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := make([]byte, min(restoreChunk, int(c.NC.MaxPayload())))
	for {
		n, err := io.ReadFull(f, chunk)
		if n > 0 {
			rctx, cancel := context.WithTimeout(ctx, defaultRequestTimeout*2)
			m, rerr := c.NC.RequestWithContext(rctx, deliver, chunk[:n])
			cancel()
			if rerr != nil {
				return rerr
			}
			if len(m.Data) > 0 {
				var apiResp server.ApiResponse
				if json.Unmarshal(m.Data, &apiResp) == nil && apiResp.Error != nil {
					return errors.New(apiResp.Error.Description)
				}
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// StreamExists reports whether the server has the stream, and how many messages it holds.
// Errors: KindUnavailable.
func StreamExists(ctx context.Context, c *Conn, stream string) (bool, uint64, error) {
	ok, n, err := streamState(ctx, c, stream)
	if err != nil {
		return false, 0, domain.E("eventlog.StreamExists", domain.KindUnavailable, err)
	}
	return ok, n, nil
}

func streamState(ctx context.Context, c *Conn, stream string) (bool, uint64, error) {
	rctx, cancel := context.WithTimeout(ctx, defaultRequestTimeout)
	defer cancel()
	s, err := c.JS.Stream(rctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, err
	}
	return true, s.CachedInfo().State.Msgs, nil
}

func apiRequest(ctx context.Context, c *Conn, subject string, body []byte, resp any) error {
	rctx, cancel := context.WithTimeout(ctx, defaultRequestTimeout)
	defer cancel()
	m, err := c.NC.RequestWithContext(rctx, subject, body)
	if err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	if err := json.Unmarshal(m.Data, resp); err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	return nil
}

func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	var h hash.Hash = sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// writeFileSync writes data to path through a temporary file, fsynced and renamed, so
// path is either absent or complete.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
