#include "bench/fio_compat.h"

namespace coblk::bench {
namespace {

constexpr const char* kEngine = "coblk uses its own engine";
constexpr const char* kUnsupported = "not supported by coblk-bench";

// fio job options that describe how fio itself submits and reaps I/O, keeps
// time or accounts statistics: coblk's engine decides these, and ignoring
// them does not change what the job measures.
constexpr std::string_view kEngineOptions[] = {
    "ioengine", "iodepth_batch", "iodepth_batch_submit", "iodepth_batch_complete",
    "iodepth_batch_complete_min", "iodepth_batch_complete_max", "iodepth_low",
    "io_submit_mode", "thread", "invalidate", "clocksource", "gtod_reduce",
    "gtod_cpu", "hipri", "fixedbufs", "registerfiles", "sqthread_poll", "sqthread_poll_cpu",
    "nonvectored", "uncached", "nowait", "force_async", "userspace_reap", "cmd_type", "mem",
    "iomem", "lockmem", "disable_lat", "disable_clat", "disable_slat",
    "disable_bw_measurement", "disable_bw", "ioscheduler", "fadvise_hint",
    "serialize_overlap", "random_generator", "allrandrepeat", "cmdprio_percentage",
    "cmdprio_class", "cmdprio", "cmdprio_bssplit", "slat_percentiles", "clat_percentiles",
    "lat_percentiles", "unified_rw_reporting", "stats", "per_job_logs", "significant_figures",
    "kb_base", "unit_base", "lockfile", "create_serialize", "create_fsync", "create_on_open",
    "allow_file_create", "allow_mounted_write", "unique_filename", "sync", "atomic",
    "write_hint", "fallocate", "overwrite", "pre_read", "exitall", "exit_what",
    "exitall_on_error", "nice", "prio", "prioclass", "cpumask", "cpus_allowed",
    "cpus_allowed_policy", "numa_cpu_nodes", "numa_mem_policy", "cgroup", "cgroup_nodelete",
    "cgroup_weight", "uid", "gid", "profile", "disk_util", "scramble_buffers",
    "refill_buffers", "zero_buffers", "buffer_pattern", "buffer_compress_percentage",
    "buffer_compress_chunk", "dedupe_percentage", "dedupe_mode",
    "dedupe_working_set_percentage", "dedupe_global", "bs_unaligned",
    "blocksize_unaligned", "file_service_type", "openfiles", "end_fsync", "fsync_on_close",
};

// The rest of fio's job options: workloads and features coblk-bench does
// not implement (yet). Accepted so that job files run, with a note.
constexpr std::string_view kOtherOptions[] = {
    "wait_for", "directory", "filename_format", "opendir", "bsrange", "blocksize_range",
    "bssplit", "ignore_error", "rw_sequencer", "io_size", "io_limit", "fill_device", "fill_fs",
    "filesize", "file_append", "offset_increment", "offset_align", "random_distribution",
    "percentage_random", "nrfiles", "nr_files", "fdatasync", "write_barrier",
    "sync_file_range", "loops", "startdelay", "verify_only", "verify_interval",
    "verify_offset", "verify_pattern", "verify_fatal", "verify_dump", "verify_async",
    "verify_backlog", "verify_backlog_batch", "experimental_verify", "verify_state_load",
    "verify_state_save", "trim_percentage", "trim_verify_zero", "trim_backlog",
    "trim_backlog_batch", "write_iolog", "read_iolog", "read_iolog_chunked", "replay_no_stall",
    "replay_redirect", "replay_scale", "replay_align", "replay_time_scale", "replay_skip",
    "merge_blktrace_file", "merge_blktrace_scalars", "merge_blktrace_iters", "exec_prerun",
    "exec_postrun", "zonemode", "zonesize", "zonecapacity", "zonerange", "zoneskip",
    "read_beyond_wp", "max_open_zones", "job_max_open_zones", "ignore_zone_limits",
    "zone_reset_threshold", "zone_reset_frequency", "thinktime", "thinktime_spin",
    "thinktime_blocks", "thinktime_blocks_type", "thinktime_iotime", "rate", "rate_min",
    "ratemin", "rate_process", "rate_cycle", "ratecycle", "rate_ignore_thinktime", "rate_iops",
    "rate_iops_min", "max_latency", "latency_target", "latency_window", "latency_percentile",
    "latency_run", "create_only", "unlink", "unlink_each_loop", "write_bw_log", "bwavgtime",
    "write_lat_log", "write_iops_log", "iopsavgtime", "log_entries", "log_avg_msec",
    "log_hist_msec", "log_hist_coarseness", "write_hist_log", "log_max_value", "log_offset",
    "log_prio", "log_compression", "log_compression_cpus", "log_store_compressed",
    "log_unix_epoch", "log_alternate_epoch", "log_alternate_epoch_clock_id",
    "block_error_percentiles", "continue_on_error", "error_dump", "flow_id", "flow",
    "flow_sleep", "steadystate", "ss", "steadystate_duration", "ss_dur",
    "steadystate_ramp_time", "ss_ramp",
};

// fio's command-line-only options other than those coblk-bench implements.
constexpr std::string_view kCliOptions[] = {
    "merge-blktrace-only", "bandwidth-log", "minimal", "append-terse", "terse-version",
    "cpuclock-test", "crctest", "cmdhelp", "enghelp", "showcmd", "eta-interval",
    "eta-newline", "status-interval", "alloc-size", "warnings-fatal", "max-jobs", "server",
    "daemonize", "client", "remote-config", "idle-prof", "inflate-log", "trigger-file",
    "trigger-timeout", "trigger", "trigger-remote", "aux-path", "latency-log", "debug",
};

template <size_t N>
bool listed(const std::string_view (&list)[N], std::string_view key) noexcept
{
    for (auto k : list)
        if (k == key)
            return true;
    return false;
}

} // namespace

const char* fio_ignored_job_option(std::string_view key) noexcept
{
    if (listed(kEngineOptions, key))
        return kEngine;
    if (listed(kOtherOptions, key))
        return kUnsupported;
    return nullptr;
}

const char* fio_ignored_cli_option(std::string_view key) noexcept
{
    return listed(kCliOptions, key) ? kUnsupported : nullptr;
}

} // namespace coblk::bench
