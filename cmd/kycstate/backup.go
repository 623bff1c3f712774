package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/erase"
	"github.com/kycstate/kycstate/store/eventlog"
)

// backupManifestName is the file a backup directory is recognised by: written last, so
// a directory without it holds no complete backup.
const backupManifestName = "kycstate-backup.json"

// backupManifest describes a backup: what it holds, from which version, and each
// stream's archive hash, checked before a restore sends it.
type backupManifest struct {
	Format    int                     `json:"format"`
	CreatedAt time.Time               `json:"createdAt"`
	Version   string                  `json:"kycstateVersion"`
	Streams   []eventlog.StreamBackup `json:"streams"`
	Note      string                  `json:"note"`
}

const backupNote = "KYC_EVENTS was copied before KYC_KEYS, so every event's data key is in the backup. " +
	"Personal data in it is sealed under data keys wrapped by keys.master, which is not in it: keep keys.master apart. " +
	"Restore with kycstate restore --from DIR --erasures LEDGER, the ledger written by kycstate erasures after this backup."

func cmdBackup(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "backup", `Writes KYC_EVENTS and KYC_KEYS to DIR with JetStream's stream snapshot API, as
"nats stream backup" writes them: DIR/KYC_EVENTS and DIR/KYC_KEYS each hold backup.json and
stream.arc.s2, and DIR/`+backupManifestName+` lists them with their hashes. KYC_EVENTS is
copied first, then KYC_KEYS, so every event in the backup has its data key in it; the
server checks every message's checksum before it sends it.

Online: through nats.url on a running cluster (the streams keep taking webhooks; the
backup is each stream as it was when its copy began). Offline: on a stopped serve's
data_dir (it starts the embedded server there, without the service).

The backup holds personal data sealed under data keys wrapped by keys.master. keys.master
is not in it: keep it apart. An erasure made after the backup is not in it either: keep
the erasure ledger (kycstate erasures) apart too, and restore with it.`+offlineNote)
	cfgPath := fs.String("config", "", "YAML config file")
	out := fs.String("out", "", "directory to write the backup to (required; must not hold a backup)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("%w: --out DIR is required", errUsage)
	}
	manifestPath := filepath.Join(*out, backupManifestName)
	if _, err := os.Stat(manifestPath); err == nil {
		return fmt.Errorf("%s already holds a backup (%s): use a new directory", *out, manifestPath)
	}
	oc, err := openOpsConn(ctx, e, *cfgPath, opsOptions{})
	if err != nil {
		return err
	}
	defer oc.Close()
	m := backupManifest{Format: 1, CreatedAt: time.Now().UTC(), Version: Version, Note: backupNote}
	for _, s := range []string{eventlog.EventStream, eventlog.KeyStream} {
		start := time.Now()
		b, err := eventlog.BackupStream(ctx, oc.conn, s, filepath.Join(*out, s))
		if err != nil {
			return err
		}
		m.Streams = append(m.Streams, b)
		fmt.Fprintf(e.stdout, "backed up %s: %d messages (seq %d to %d), %d bytes archived in %s\n",
			s, b.Messages, b.FirstSeq, b.LastSeq, b.Size, time.Since(start).Round(time.Millisecond))
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(manifestPath, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", manifestPath, err)
	}
	fmt.Fprintf(e.stdout, "backup complete in %s\n", *out)
	return nil
}

// readManifest reads a backup's manifest. A directory without one but with both stream
// backups (written by "nats stream backup") is taken as it is, without hashes to check.
func readManifest(dir string) (backupManifest, error) {
	var m backupManifest
	data, err := os.ReadFile(filepath.Join(dir, backupManifestName))
	if errors.Is(err, os.ErrNotExist) {
		for _, s := range []string{eventlog.EventStream, eventlog.KeyStream} {
			if _, err := os.Stat(filepath.Join(dir, s, eventlog.BackupMetaFile)); err != nil {
				return m, fmt.Errorf("%s is not a complete backup: no %s and no %s", dir, backupManifestName, filepath.Join(dir, s, eventlog.BackupMetaFile))
			}
			m.Streams = append(m.Streams, eventlog.StreamBackup{Stream: s})
		}
		return m, nil
	}
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("%s: %w", filepath.Join(dir, backupManifestName), err)
	}
	if m.Format != 1 {
		return m, fmt.Errorf("%s: format %d, this build reads format 1", filepath.Join(dir, backupManifestName), m.Format)
	}
	have := map[string]bool{}
	for _, s := range m.Streams {
		have[s.Stream] = true
	}
	if !have[eventlog.EventStream] || !have[eventlog.KeyStream] {
		return m, fmt.Errorf("%s does not list both %s and %s", filepath.Join(dir, backupManifestName), eventlog.EventStream, eventlog.KeyStream)
	}
	return m, nil
}

func cmdRestore(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "restore", `Restores a backup written by kycstate backup (KYC_EVENTS and KYC_KEYS) into a server
that has neither, refusing otherwise. Then, before any node serves: it destroys every data
key the restored KYC_KEYS still holds for an applicant it marks erased; finishes the
erasures that were under way in the backup; and with --erasures, erases again each
applicant of the ledger whose restored log does not show it erased (applicantErased, by
"restore", the reason naming the ledger, then its key destroyed), so an erasure made after
the backup stays made. A node then rebuilds its projection (a query node started with none
folds the log), and verify passes.

Online: into the running cluster at nats.url. Offline: into <data_dir>/nats with the service
stopped, the embedded server started here without it (a fresh data_dir is created; one
holding a projection is refused, since that projection belongs to another log). It needs keys.master, the key the backup's data keys
are wrapped under.`)
	cfgPath := fs.String("config", "", "YAML config file")
	from := fs.String("from", "", "backup directory written by kycstate backup (required)")
	ledgerPath := fs.String("erasures", "", "erasure ledger written by kycstate erasures after the backup")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *from == "" {
		return fmt.Errorf("%w: --from DIR is required", errUsage)
	}
	m, err := readManifest(*from)
	if err != nil {
		return err
	}
	var ledger []erase.LedgerEntry
	if *ledgerPath != "" {
		f, err := os.Open(*ledgerPath)
		if err != nil {
			return fmt.Errorf("--erasures: %w", err)
		}
		ledger, err = erase.ReadLedger(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("--erasures %s: %w", *ledgerPath, err)
		}
	}
	oc, err := openOpsConn(ctx, e, *cfgPath, opsOptions{NeedKeys: true, NewDataDir: true})
	if err != nil {
		return err
	}
	defer oc.Close()
	if len(oc.r.URLs) == 0 {
		if _, err := os.Stat(filepath.Join(oc.r.DataDir, "projection.db")); err == nil {
			return fmt.Errorf("data_dir %s holds a projection (projection.db) of another log: restore into a fresh data_dir, or move the file away", oc.r.DataDir)
		}
	}
	var present []string
	for _, s := range []string{eventlog.EventStream, eventlog.KeyStream} {
		ok, n, err := eventlog.StreamExists(ctx, oc.conn, s)
		if err != nil {
			return err
		}
		if ok {
			present = append(present, fmt.Sprintf("%s (%d messages)", s, n))
		}
	}
	if len(present) > 0 {
		return domain.E("restore", domain.KindConflict, fmt.Sprintf(
			"the server already has %s: a restore goes into a server that has neither KYC_EVENTS nor KYC_KEYS (a fresh data_dir offline; online, remove them first)",
			strings.Join(present, " and ")))
	}
	subjects := map[string][]string{eventlog.EventStream: {eventlog.EventSubjects}, eventlog.KeyStream: {eventlog.KeySubjects}}
	for _, s := range m.Streams {
		if subjects[s.Stream] == nil {
			continue
		}
		start := time.Now()
		got, err := eventlog.RestoreStream(ctx, oc.conn, s.Stream, filepath.Join(*from, s.Stream), s.SHA256, subjects[s.Stream], oc.r.NATS.Replicas)
		if err != nil {
			return fmt.Errorf("%w (what was restored before this stays: restore again into a fresh data_dir, or remove the streams)", err)
		}
		fmt.Fprintf(e.stdout, "restored %s: %d messages (seq %d to %d) in %s\n", s.Stream, got.Messages, got.FirstSeq, got.LastSeq,
			time.Since(start).Round(time.Millisecond))
	}
	events, err := eventlog.Open(ctx, oc.conn, logConfig(oc.r), oc.log)
	if err != nil {
		return fmt.Errorf("the streams are restored, but the log does not open: %w", err)
	}
	keys := events.Keys()
	rep, err := keys.ShredErased(ctx)
	if err != nil {
		return fmt.Errorf("destroying the keys of erased applicants: %w", err)
	}
	fmt.Fprintf(e.stdout, "erased applicants in the backup: %d; data keys found and destroyed: %d\n", rep.Erased, rep.Destroyed)
	er, err := erase.New(erase.Config{Events: events, Keys: keys, Rejects: events, Logger: oc.log})
	if err != nil {
		return err
	}
	name := "(none)"
	if *ledgerPath != "" {
		name = filepath.Base(*ledgerPath)
	}
	arep, err := er.EraseAfterRestore(ctx, keys, events, ledger, name)
	if err != nil {
		return fmt.Errorf("applying erasures after the restore: %w", err)
	}
	fmt.Fprintf(e.stdout, "erasures: %d under way in the backup finished; %d of %d in the ledger erased again (%d already erased); %d marked erased in KYC_KEYS only, erased\n",
		arep.Resumed, arep.Ledger, len(ledger), arep.Already, arep.Tombstone)
	fmt.Fprintln(e.stdout, "restore complete: start a query node (it folds the log into a new projection), then run kycstate verify")
	return nil
}

func cmdErasures(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "erasures", `Writes the erasure ledger: one JSON line per erasure in the log,
{"provider","app","applicantId","at","seq"}, and nothing personal (no externalUserId, no
reason, no who). Keep it apart from backups, and write it again after every erasure (or on
a schedule shorter than the backups'): kycstate restore --erasures FILE erases again every
listed applicant that a restored backup predates. Needs keys.master.`+offlineNote)
	cfgPath := fs.String("config", "", "YAML config file")
	out := fs.String("out", "", `file to write the ledger to (required; "-" for standard output)`)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("%w: --out FILE is required", errUsage)
	}
	o, err := openOps(ctx, e, *cfgPath, opsOptions{NeedKeys: true})
	if err != nil {
		return err
	}
	defer o.Close()
	ledger, err := erase.Ledger(ctx, o.events.Keys(), o.events)
	if err != nil {
		return err
	}
	if *out == "-" {
		return erase.WriteLedger(e.stdout, ledger)
	}
	tmp := *out + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	err = erase.WriteLedger(f, ledger)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, *out)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", *out, err)
	}
	fmt.Fprintf(e.stdout, "wrote %d erasures to %s\n", len(ledger), *out)
	return nil
}
