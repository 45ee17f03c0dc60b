// Tests of coblk-bench's parts: fio option and job-file parsing and their
// errors, the latency histogram against percentiles computed by sorting,
// CRC-32C against published vectors, the verify block format, the random
// block permutation, fio's number formats, and the shape of the JSON report
// (read back with a small JSON parser written here). A few runs of real
// jobs on null:// and memory:// check the runner end to end.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "bench/block_permutation.h"
#include "engine/crc32c.h"
#include "bench/job_options.h"
#include "bench/job_runner.h"
#include "bench/latency_histogram.h"
#include "bench/plot_svg.h"
#include "bench/progress.h"
#include "bench/report.h"
#include "bench/report_units.h"
#include "bench/target_check.h"
#include "bench/verify_block.h"
#include "tests/helpers.h"

using namespace coblk;
using namespace coblk::bench;

namespace {

// ---- a small JSON reader, to check the report's shape independently ----

struct Json {
    enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
    double num = 0;
    bool b = false;
    std::string str;
    std::vector<Json> arr;
    std::vector<std::pair<std::string, Json>> obj;

    bool has(const std::string& k) const
    {
        for (const auto& kv : obj)
            if (kv.first == k)
                return true;
        return false;
    }
    const Json& operator[](const std::string& k) const
    {
        for (const auto& kv : obj)
            if (kv.first == k)
                return kv.second;
        FAIL("JSON object has no member '" << k << "'");
        static Json none;
        return none;
    }
    const Json& operator[](size_t i) const
    {
        REQUIRE(kind == Array);
        REQUIRE(i < arr.size());
        return arr[i];
    }
};

class JsonReader {
public:
    explicit JsonReader(const std::string& s) : s_(s) {}
    Json document()
    {
        Json v = value();
        ws();
        if (pos_ != s_.size())
            throw std::runtime_error("trailing text at " + std::to_string(pos_));
        return v;
    }

private:
    void ws()
    {
        while (pos_ < s_.size() && std::strchr(" \t\r\n", s_[pos_]))
            pos_++;
    }
    char peek()
    {
        ws();
        if (pos_ >= s_.size())
            throw std::runtime_error("unexpected end");
        return s_[pos_];
    }
    void expect(char c)
    {
        if (peek() != c)
            throw std::runtime_error(std::string("expected '") + c + "' at " +
                                     std::to_string(pos_));
        pos_++;
    }
    std::string string_lit()
    {
        expect('"');
        std::string out;
        while (pos_ < s_.size() && s_[pos_] != '"') {
            char c = s_[pos_++];
            if (static_cast<unsigned char>(c) < 0x20)
                throw std::runtime_error("control character in string");
            if (c == '\\') {
                char e = s_.at(pos_++);
                switch (e) {
                case 'n': out += '\n'; break;
                case 't': out += '\t'; break;
                case 'r': out += '\r'; break;
                case 'u': out += char(std::stoi(s_.substr(pos_, 4), nullptr, 16)); pos_ += 4; break;
                default: out += e;
                }
            } else {
                out += c;
            }
        }
        expect('"');
        return out;
    }
    Json value()
    {
        Json v;
        char c = peek();
        if (c == '{') {
            pos_++;
            v.kind = Json::Object;
            if (peek() == '}') {
                pos_++;
                return v;
            }
            for (;;) {
                std::string k = string_lit();
                expect(':');
                v.obj.emplace_back(k, value());
                if (peek() == ',') {
                    pos_++;
                    continue;
                }
                expect('}');
                return v;
            }
        }
        if (c == '[') {
            pos_++;
            v.kind = Json::Array;
            if (peek() == ']') {
                pos_++;
                return v;
            }
            for (;;) {
                v.arr.push_back(value());
                if (peek() == ',') {
                    pos_++;
                    continue;
                }
                expect(']');
                return v;
            }
        }
        if (c == '"') {
            v.kind = Json::String;
            v.str = string_lit();
            return v;
        }
        if (s_.compare(pos_, 4, "true") == 0 || s_.compare(pos_, 5, "false") == 0) {
            v.kind = Json::Bool;
            v.b = s_[pos_] == 't';
            pos_ += v.b ? 4 : 5;
            return v;
        }
        if (s_.compare(pos_, 4, "null") == 0) {
            pos_ += 4;
            return v;
        }
        size_t used = 0;
        v.kind = Json::Number;
        v.num = std::stod(s_.substr(pos_, 40), &used);
        if (used == 0)
            throw std::runtime_error("bad value at " + std::to_string(pos_));
        pos_ += used;
        return v;
    }

    const std::string& s_;
    size_t pos_ = 0;
};

Json parse_json(const std::string& text)
{
    try {
        return JsonReader(text).document();
    } catch (const std::exception& e) {
        FAIL("invalid JSON: " << e.what() << "\n" << text.substr(0, 2000));
    }
    return {};
}

// ---- helpers ----

RunConfig must_parse(const std::vector<std::string>& args,
                     const std::vector<std::pair<std::string, std::string>>& files = {})
{
    auto r = parse_command_line_with(args, files);
    if (!r)
        FAIL("unexpected error: " << r.error().message);
    return std::move(r).value();
}

std::string parse_error(const std::vector<std::string>& args,
                        const std::vector<std::pair<std::string, std::string>>& files = {})
{
    auto r = parse_command_line_with(args, files);
    if (r)
        FAIL("expected an error for the arguments");
    return r.error().message;
}

// The value at percentile p of `v` by the textbook definition: the smallest
// value with at least p% of the values at or below it.
uint64_t reference_percentile(std::vector<uint64_t> v, double p)
{
    std::sort(v.begin(), v.end());
    size_t rank = size_t(std::ceil(p / 100.0 * double(v.size()) - 1e-9));
    rank = std::clamp<size_t>(rank, 1, v.size());
    return v[rank - 1];
}

} // namespace

// ---------------------------------------------------------------- crc32c

TEST_CASE("crc32c matches the published check values", "[bench]")
{
    const char* digits = "123456789";
    CHECK(crc32c(0, digits, 9) == 0xE3069283u);
    CHECK(crc32c_sw(0, digits, 9) == 0xE3069283u);
    CHECK(crc32c(0, "", 0) == 0u);

    // RFC 3720 (iSCSI) appendix B.4.
    unsigned char buf[32];
    std::memset(buf, 0, sizeof buf);
    CHECK(crc32c(0, buf, 32) == 0x8A9136AAu);
    CHECK(crc32c_sw(0, buf, 32) == 0x8A9136AAu);
    std::memset(buf, 0xFF, sizeof buf);
    CHECK(crc32c(0, buf, 32) == 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = static_cast<unsigned char>(i);
    CHECK(crc32c(0, buf, 32) == 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        buf[i] = static_cast<unsigned char>(31 - i);
    CHECK(crc32c_sw(0, buf, 32) == 0x113FDB5Cu);
}

TEST_CASE("crc32c: hardware and software agree, and crcs extend", "[bench]")
{
    std::mt19937_64 rng(7);
    std::vector<unsigned char> data(10000);
    for (auto& b : data)
        b = static_cast<unsigned char>(rng());
    for (size_t len : {1u, 7u, 8u, 9u, 63u, 4096u, 10000u}) {
        INFO("len " << len);
        uint32_t whole = crc32c_sw(0, data.data(), len);
        CHECK(crc32c(0, data.data(), len) == whole);
        size_t cut = len / 3;
        CHECK(crc32c(crc32c(0, data.data(), cut), data.data() + cut, len - cut) == whole);
        CHECK(crc32c_sw(crc32c_sw(0, data.data(), cut), data.data() + cut, len - cut) == whole);
    }
}

// ------------------------------------------------------------ histogram

TEST_CASE("latency histogram buckets cover every value with <= 1/64 relative width", "[bench]")
{
    std::mt19937_64 rng(1);
    unsigned prev = 0;
    for (uint64_t v = 0; v < 5000; v++) {
        unsigned i = LatencyHistogram::index(v);
        CHECK(i >= prev);  // monotonic
        prev = i;
        CHECK(LatencyHistogram::bucket_low(i) <= v);
        CHECK(v <= LatencyHistogram::bucket_high(i));
    }
    for (int k = 0; k < 100000; k++) {
        uint64_t v = rng() >> (rng() % 64);
        unsigned i = LatencyHistogram::index(v);
        REQUIRE(i < LatencyHistogram::kBuckets);
        uint64_t lo = LatencyHistogram::bucket_low(i), hi = LatencyHistogram::bucket_high(i);
        REQUIRE(lo <= v);
        REQUIRE(v <= hi);
        if (lo >= 128)
            REQUIRE(double(hi - lo + 1) / double(lo) <= 1.0 / 64 + 1e-12);
    }
    CHECK(LatencyHistogram::index(UINT64_MAX) == LatencyHistogram::kBuckets - 1);
    // Adjacent buckets tile the number line.
    for (unsigned i = 1; i < LatencyHistogram::kBuckets; i++)
        REQUIRE(LatencyHistogram::bucket_low(i) == LatencyHistogram::bucket_high(i - 1) + 1);
}

TEST_CASE("latency histogram percentiles are within 1.6% of sorted values", "[bench]")
{
    std::mt19937_64 rng(42);
    std::vector<std::vector<uint64_t>> sets;
    std::vector<uint64_t> uniform, lognormal, bimodal, constant, tiny;
    std::lognormal_distribution<double> ln(10.0, 1.2);  // around 22 us
    for (int i = 0; i < 100000; i++) {
        uniform.push_back(1000 + rng() % 200000);
        lognormal.push_back(uint64_t(ln(rng)));
        bimodal.push_back(i % 100 == 0 ? 5000000 + rng() % 1000000 : 20000 + rng() % 5000);
    }
    for (int i = 0; i < 3; i++)
        tiny.push_back(uint64_t(100 + i * 1000));
    constant.assign(1000, 123456);
    sets = {uniform, lognormal, bimodal, constant, tiny};
    std::vector<double> ps = default_percentiles();
    ps.push_back(100);
    for (const auto& values : sets) {
        LatencyHistogram h;
        for (uint64_t v : values)
            h.add(v);
        std::vector<uint64_t> got = h.percentiles(ps);
        for (size_t k = 0; k < ps.size(); k++) {
            uint64_t want = reference_percentile(values, ps[k]);
            INFO("n=" << values.size() << " p" << ps[k] << " histogram " << got[k]
                      << " sorted " << want);
            CHECK(std::fabs(double(got[k]) - double(want)) <= double(want) / 64.0 + 1.0);
            CHECK(h.percentile(ps[k]) == got[k]);
        }
        // min, max, mean and stddev are exact.
        CHECK(h.count() == values.size());
        CHECK(h.min() == *std::min_element(values.begin(), values.end()));
        CHECK(h.max() == *std::max_element(values.begin(), values.end()));
        long double sum = 0;
        for (uint64_t v : values)
            sum += v;
        long double mean = sum / values.size();
        long double q = 0;
        for (uint64_t v : values)
            q += (v - mean) * (v - mean);
        double sd = values.size() > 1 ? double(std::sqrt(q / (values.size() - 1))) : 0.0;
        CHECK(h.mean() == Approx(double(mean)).epsilon(1e-12));
        CHECK(h.stddev() == Approx(sd).epsilon(1e-9).margin(1e-9));
    }
}

TEST_CASE("latency histograms merge exactly", "[bench]")
{
    std::mt19937_64 rng(3);
    LatencyHistogram a, b, all;
    for (int i = 0; i < 50000; i++) {
        uint64_t v = 500 + rng() % 1000000;
        (i % 3 ? a : b).add(v);
        all.add(v);
    }
    a.merge(b);
    CHECK(a.count() == all.count());
    CHECK(a.min() == all.min());
    CHECK(a.max() == all.max());
    CHECK(a.mean() == all.mean());
    CHECK(a.stddev() == all.stddev());
    auto ps = default_percentiles();
    CHECK(a.percentiles(ps) == all.percentiles(ps));
    LatencyHistogram empty;
    CHECK(empty.percentile(50) == 0);
    CHECK(empty.min() == 0);
    CHECK(empty.stddev() == 0);
}

// ---------------------------------------------------------- options

TEST_CASE("command-line options form one job with fio's names", "[bench]")
{
    RunConfig cfg = must_parse({"--name=t", "--filename=null://", "--rw=randread", "--bs=4k",
                                "--iodepth=32", "--size=256M", "--runtime=5", "--time_based",
                                "--numjobs=2", "--rwmixread=70", "--direct=1", "--fsync=8",
                                "--randseed=99", "--verify=crc32c", "--number_ios=1000",
                                "--ramp_time=500ms", "--offset=1M", "--output-format=json"});
    REQUIRE(cfg.jobs.size() == 1);
    const JobSpec& j = cfg.jobs[0];
    CHECK(j.name == "t");
    CHECK(j.filename == "null://");
    CHECK(j.rw == Rw::RandRead);
    CHECK(j.bs == 4096);
    CHECK(j.iodepth == 32);
    CHECK(j.size.value() == 256ull << 20);
    CHECK(j.runtime_ns == 5000000000ull);
    CHECK(j.time_based);
    CHECK(j.numjobs == 2);
    CHECK(j.rwmixread == 70);
    CHECK(j.direct);
    CHECK(j.fsync == 8);
    CHECK(j.randseed.value() == 99);
    CHECK(j.verify);
    CHECK(j.number_ios == 1000);
    CHECK(j.ramp_ns == 500000000ull);
    CHECK(j.offset == 1 << 20);
    CHECK(cfg.format == OutputFormat::Json);
    CHECK(cfg.notes.empty());

    CHECK(must_parse({"--filename=x", "--rwmixwrite=30", "--output-format=json+"}).jobs[0]
              .rwmixread == 70);
    CHECK(must_parse({"--filename=x", "--output-format", "json+"}).format ==
          OutputFormat::JsonPlus);
    CHECK(must_parse({"--filename=x", "--readwrite=randrw", "--blocksize=64k"}).jobs[0].rw ==
          Rw::RandRW);
    CHECK(must_parse({"--filename=x", "--blocksize=64k"}).jobs[0].bs == 65536);
    CHECK(must_parse({"--filename=x", "--rw=readwrite"}).jobs[0].rw == Rw::ReadWrite);
    CHECK_FALSE(must_parse({"--filename=x", "--time_based=0"}).jobs[0].time_based);
    CHECK_FALSE(must_parse({"--filename=x", "--buffered=1"}).jobs[0].direct);
    CHECK(must_parse({"--filename=x", "--busy_poll"}).jobs[0].busy_poll);
    CHECK_FALSE(must_parse({"--filename=x"}).jobs[0].busy_poll);
    CHECK(must_parse({"--filename=x", "--plot", "p.svg"}).plot == "p.svg");
    CHECK(must_parse({"--help"}).help);
}

TEST_CASE("each --name starts a job; options before it are common", "[bench]")
{
    RunConfig cfg = must_parse({"--filename=null://", "--bs=8k", "--name=a", "--rw=read",
                                "--name=b", "--rw=randwrite", "--bs=16k"});
    REQUIRE(cfg.jobs.size() == 2);
    CHECK(cfg.jobs[0].name == "a");
    CHECK(cfg.jobs[0].rw == Rw::Read);
    CHECK(cfg.jobs[0].bs == 8192);
    CHECK(cfg.jobs[1].name == "b");
    CHECK(cfg.jobs[1].rw == Rw::RandWrite);
    CHECK(cfg.jobs[1].bs == 16384);
    CHECK(cfg.jobs[1].filename == "null://");
}

TEST_CASE("bad option values are refused naming the key and value", "[bench]")
{
    auto err = [](std::string arg) { return parse_error({"--filename=null://", arg}); };
    CHECK_THAT(err("--bs=0"), Catch::Contains("bs=0"));
    CHECK_THAT(err("--bs=4x"), Catch::Contains("bs=4x"));
    CHECK_THAT(err("--bs=4k,8k"), Catch::Contains("bs=4k,8k"));
    CHECK_THAT(err("--rwmixread=101"), Catch::Contains("rwmixread=101"));
    CHECK_THAT(err("--numjobs=0"), Catch::Contains("numjobs=0"));
    CHECK_THAT(err("--iodepth=0"), Catch::Contains("iodepth=0"));
    CHECK_THAT(err("--iodepth=abc"), Catch::Contains("iodepth=abc"));
    CHECK_THAT(err("--rw=sideways"), Catch::Contains("rw=sideways"));
    CHECK_THAT(err("--runtime=5x"), Catch::Contains("runtime=5x"));
    CHECK_THAT(err("--size=50%"), Catch::Contains("size=50%"));
    CHECK_THAT(err("--verify=md5"), Catch::Contains("verify=md5"));
    CHECK_THAT(err("--time_based=maybe"), Catch::Contains("time_based=maybe"));
    CHECK_THAT(err("--busy_poll=often"), Catch::Contains("busy_poll=often"));
    CHECK_THAT(err("--bs"), Catch::Contains("bs"));
    CHECK_THAT(err("--output-format=terse"), Catch::Contains("terse"));

    std::string unknown = err("--frobnicate=3");
    CHECK_THAT(unknown, Catch::Contains("unknown option") && Catch::Contains("frobnicate"));

    CHECK_THAT(parse_error({"--name=t", "--time_based"}), Catch::Contains("filename"));
    CHECK_THAT(parse_error({"--filename=x", "--time_based"}), Catch::Contains("runtime"));
    CHECK_THAT(parse_error({"--filename=x", "--bs=4k", "--size=1k"}),
               Catch::Contains("size=1k"));
    CHECK_THAT(parse_error({"--filename=x", "--verify=crc32c", "--bs=16"}),
               Catch::Contains("verify"));
    CHECK_THAT(parse_error({"--filename=x", "--rw=write", "--readonly"}),
               Catch::Contains("readonly"));
    CHECK_THAT(parse_error({}), Catch::Contains("nothing to do"));
}

TEST_CASE("fio options that make no sense for coblk are accepted with one note", "[bench]")
{
    RunConfig cfg = must_parse({"--filename=null://", "--ioengine=libaio", "--thread",
                                "--iodepth_batch=16", "--ioengine=libaio", "--minimal"});
    REQUIRE(cfg.jobs.size() == 1);
    std::vector<std::string> want = {
        "coblk-bench: note: ignoring fio option 'ioengine=libaio' (coblk uses its own engine)",
        "coblk-bench: note: ignoring fio option 'thread' (coblk uses its own engine)",
        "coblk-bench: note: ignoring fio option 'iodepth_batch=16' (coblk uses its own engine)",
    };
    for (const auto& w : want)
        CHECK(std::count(cfg.notes.begin(), cfg.notes.end(), w) == 1);
    bool minimal = false;
    for (const auto& n : cfg.notes)
        minimal |= n.find("--minimal") != std::string::npos;
    CHECK(minimal);
    CHECK(cfg.notes.size() == 4);  // the repeated ioengine gives no second note
}

TEST_CASE("fio time values", "[bench]")
{
    auto t = [](const char* s) { return parse_time_ns(s, "runtime").value(); };
    CHECK(t("10") == 10000000000ull);
    CHECK(t("10s") == 10000000000ull);
    CHECK(t("10sec") == 10000000000ull);
    CHECK(t("1m") == 60000000000ull);
    CHECK(t("2h") == 7200000000000ull);
    CHECK(t("1d") == 86400000000000ull);
    CHECK(t("500ms") == 500000000ull);
    CHECK(t("500MSEC") == 500000000ull);
    CHECK(t("100us") == 100000ull);
    CHECK_FALSE(parse_time_ns("", "runtime"));
    CHECK_FALSE(parse_time_ns("ms", "runtime"));
    CHECK_FALSE(parse_time_ns("1.5s", "runtime"));
    CHECK_FALSE(parse_time_ns("10 parsecs", "runtime"));
}

// -------------------------------------------------------------- job files

TEST_CASE("job files: [global], sections, comments, bare keys", "[bench]")
{
    std::string text =
        "; a fio job file\n"
        "# with comments of both kinds\n"
        "[global]\n"
        "ioengine=libaio\n"
        "  bs = 8k  \n"
        "direct=1\n"
        "time_based\n"
        "runtime=2s\n"
        "filename=null://\n"
        "\n"
        "[reader]\n"
        "rw=randread\n"
        "iodepth=16\n"
        "[writer]\n"
        "rw=write\n"
        "bs=64k\n"
        "[global]\n"
        "iodepth=4\n"
        "[late]\n"
        "rw=read\n";
    RunConfig cfg = must_parse({"jobs.fio"}, {{"jobs.fio", text}});
    REQUIRE(cfg.jobs.size() == 3);
    const JobSpec &r = cfg.jobs[0], &w = cfg.jobs[1], &l = cfg.jobs[2];
    CHECK(r.name == "reader");
    CHECK(r.rw == Rw::RandRead);
    CHECK(r.bs == 8192);
    CHECK(r.iodepth == 16);
    CHECK(r.direct);
    CHECK(r.time_based);
    CHECK(r.runtime_ns == 2000000000ull);
    CHECK(r.filename == "null://");
    CHECK(w.name == "writer");
    CHECK(w.bs == 65536);
    CHECK(w.iodepth == 1);      // the second [global] comes after it
    CHECK(l.iodepth == 4);      // ... and applies to the jobs below it
    CHECK(cfg.notes.size() == 1);
    CHECK(r.origin("bs")->where == "jobs.fio:5");

    // Command-line job options apply to every job, over the file's values.
    RunConfig over = must_parse({"--filename=memory://x", "--bs=4k", "jobs.fio"},
                                {{"jobs.fio", text}});
    for (const JobSpec& j : over.jobs) {
        CHECK(j.filename == "memory://x");
        CHECK(j.bs == 4096);
    }
    // --section runs only the named sections.
    RunConfig only = must_parse({"--section=writer", "jobs.fio"}, {{"jobs.fio", text}});
    REQUIRE(only.jobs.size() == 1);
    CHECK(only.jobs[0].name == "writer");
}

TEST_CASE("job files: environment variables and several files", "[bench]")
{
    ::setenv("COBLK_BENCH_TEST_TARGET", "memory://envtarget", 1);
    RunConfig cfg = must_parse({"a.fio", "b.fio"},
                               {{"a.fio", "[a]\nfilename=${COBLK_BENCH_TEST_TARGET}\n"},
                                {"b.fio", "[b]\nfilename=null://\n[c]\nfilename=null://\n"}});
    REQUIRE(cfg.jobs.size() == 3);
    CHECK(cfg.jobs[0].filename == "memory://envtarget");
    CHECK_FALSE(cfg.jobs[0].stonewall);
    CHECK(cfg.jobs[1].stonewall);  // each file after the first starts after the one before
    CHECK_FALSE(cfg.jobs[2].stonewall);
    ::unsetenv("COBLK_BENCH_TEST_UNSET_VARIABLE");
    CHECK_THAT(parse_error({"a.fio"}, {{"a.fio", "[a]\nfilename=${COBLK_BENCH_TEST_UNSET_VARIABLE}\n"}}),
               Catch::Contains("COBLK_BENCH_TEST_UNSET_VARIABLE") && Catch::Contains("a.fio:2"));
}

TEST_CASE("job file errors give the file and line", "[bench]")
{
    auto err = [](std::string text) { return parse_error({"j.fio"}, {{"j.fio", text}}); };
    CHECK_THAT(err("[t]\nfilename=null://\n\nfrobnicate=1\n"),
               Catch::Contains("j.fio:4") && Catch::Contains("frobnicate"));
    CHECK_THAT(err("[t]\nfilename=null://\nbs=0\n"),
               Catch::Contains("j.fio:3") && Catch::Contains("bs=0"));
    CHECK_THAT(err("bs=4k\n[t]\n"), Catch::Contains("j.fio:1"));
    CHECK_THAT(err("[t\nbs=4k\n"), Catch::Contains("j.fio:1"));
    CHECK_THAT(err("[t]\n=4k\n"), Catch::Contains("j.fio:2"));
    CHECK_THAT(err("[global]\nbs=4k\n"), Catch::Contains("no job"));
    CHECK_THAT(parse_error({"missing.fio"}), Catch::Contains("missing.fio"));
    CHECK_THAT(parse_error({"--name=x", "j.fio"}, {{"j.fio", "[t]\nfilename=null://\n"}}),
               Catch::Contains("--name"));
}

// ------------------------------------------------------- target checks

namespace {
PreparedJob prepared(std::vector<std::string> args)
{
    args.insert(args.begin(), "--filename=/dev/zero-ish");
    PreparedJob p;
    p.spec = must_parse(args).jobs.at(0);
    return p;
}
} // namespace

TEST_CASE("jobs are checked against the target's size and alignment", "[bench]")
{
    const std::string what = "'t' (cache=none)";
    {
        PreparedJob p = prepared({"--bs=3k", "--direct=1"});
        auto r = check_against_target(p, 1 << 30, 4096, false, what);
        REQUIRE_FALSE(r);
        CHECK_THAT(r.error().message, Catch::Contains("bs=3k") && Catch::Contains("4096"));
    }
    {
        PreparedJob p = prepared({"--bs=3k"});
        CHECK(check_against_target(p, 3 << 20, 1, false, what));
        CHECK(p.size == 3 << 20);
        CHECK(p.nblocks == 1024);
    }
    {
        PreparedJob p = prepared({"--size=2G", "--rw=randread"});
        auto r = check_against_target(p, 1 << 30, 1, true, what);
        REQUIRE_FALSE(r);
        CHECK_THAT(r.error().message, Catch::Contains("size=2G") && Catch::Contains("1073741824"));
    }
    {
        // A write job may grow a file, not a fixed-size device.
        PreparedJob p = prepared({"--size=2G", "--rw=write"});
        CHECK(check_against_target(p, 1 << 30, 1, true, what));
        CHECK(p.size == 2ull << 30);
        PreparedJob q = prepared({"--size=2G", "--rw=write"});
        CHECK_FALSE(check_against_target(q, 1 << 30, 1, false, what));
    }
    {
        // The default size is what lies past offset, rounded down to blocks.
        PreparedJob p = prepared({"--offset=1M", "--bs=64k"});
        CHECK(check_against_target(p, (16 << 20) + 1000, 1, false, what));
        CHECK(p.size == 15 << 20);
        CHECK(p.nblocks == 240);
    }
    {
        PreparedJob p = prepared({"--offset=2M"});
        auto r = check_against_target(p, 1 << 20, 1, false, what);
        REQUIRE_FALSE(r);
        CHECK_THAT(r.error().message, Catch::Contains("offset=2M"));
    }
    {
        PreparedJob p = prepared({"--offset=512", "--direct=1"});
        auto r = check_against_target(p, 1 << 20, 4096, false, what);
        REQUIRE_FALSE(r);
        CHECK_THAT(r.error().message, Catch::Contains("offset=512"));
    }
    {
        PreparedJob p = prepared({"--verify=crc32c", "--iodepth=8", "--size=32k"});
        auto r = check_against_target(p, 1 << 20, 1, false, what);
        REQUIRE_FALSE(r);
        CHECK_THAT(r.error().message, Catch::Contains("iodepth"));
    }
}

// ---------------------------------------------------------- verify, map

TEST_CASE("verify blocks: intact, corrupted, misplaced, never written", "[bench]")
{
    std::vector<unsigned char> b(4096);
    fill_verify_block(b.data(), b.size(), 8192, 17);
    CHECK(check_verify_block(b.data(), b.size(), 8192).empty());
    CHECK_THAT(check_verify_block(b.data(), b.size(), 4096), Catch::Contains("8192"));
    auto bad = b;
    bad[2000] ^= 1;
    CHECK_THAT(check_verify_block(bad.data(), bad.size(), 8192), Catch::Contains("crc32c"));
    std::vector<unsigned char> zero(4096, 0);
    CHECK_THAT(check_verify_block(zero.data(), zero.size(), 0), Catch::Contains("magic"));
    std::vector<unsigned char> other(4096);
    fill_verify_block(other.data(), other.size(), 8192, 18);
    CHECK(other != b);  // the payload depends on the write sequence
}

TEST_CASE("the random block order visits every block once per pass", "[bench]")
{
    for (uint64_t n : {1ull, 2ull, 3ull, 5ull, 64ull, 1000ull, 4097ull, 65536ull}) {
        BlockPermutation p;
        p.reset(n, 12345);
        std::vector<bool> seen(n);
        for (uint64_t i = 0; i < n; i++) {
            uint64_t b = p.at(i);
            REQUIRE(b < n);
            REQUIRE_FALSE(seen[b]);
            seen[b] = true;
        }
    }
    BlockPermutation a, b;
    a.reset(1000, 1);
    b.reset(1000, 2);
    int same = 0, in_order = 0;
    for (uint64_t i = 0; i < 1000; i++) {
        same += a.at(i) == b.at(i);
        in_order += a.at(i) == i;
    }
    CHECK(same < 50);
    CHECK(in_order < 50);
}

// ------------------------------------------------------- number formats

TEST_CASE("numbers are printed as fio prints them", "[bench]")
{
    // fio 3.33 printed, for 3981312 bytes read in 192 ms:
    //   read: IOPS=5062, BW=19.8MiB/s (20.7MB/s)(3888KiB/192msec)
    //   io=3888KiB (3981kB)
    double rate = 3981312 / 0.192;
    CHECK(format_rate_binary(rate) == "19.8MiB/s");
    CHECK(format_rate_decimal(rate) == "20.7MB/s");
    CHECK(format_bytes_binary(3981312) == "3888KiB");
    CHECK(format_bytes_decimal(3981312) == "3981kB");
    CHECK(format_scaled(5062, false, true) == "5062");
    CHECK(format_scaled(256000, false, true) == "256k");
    CHECK(format_bytes_binary(1 << 20) == "1024KiB");  // fio: "(1024KiB/2msec)"
    CHECK(format_rate_binary(1000.0 * 1024 * 1024) == "1000MiB/s");
    const char* unit;
    CHECK(latency_unit(791, 7063, &unit) == 1);
    CHECK(std::string(unit) == "nsec");
    CHECK(latency_unit(25000, 4126000, &unit) == 1000);
    CHECK(std::string(unit) == "usec");
}

TEST_CASE("the progress line", "[bench]")
{
    ProgressSnapshot s;
    s.running = 2;
    s.states = "rw";
    s.percent = 42.0;
    s.read_iops = 123456;
    s.write_iops = 0;
    s.eta_s = 7;
    CHECK(progress_text(s) == "Jobs: 2 (f=2): [rw] [42.0% done] [r=123k,w=0 IOPS] [eta 00m:07s]");
    s.eta_s = 3725;
    CHECK_THAT(progress_text(s), Catch::EndsWith("[eta 01h:02m:05s]"));
}

// ------------------------------------------------------ reports and runs

namespace {

// A finished result with `n` reads of lat + (i % 1000) * spread ns over
// `runtime_ns`.
std::unique_ptr<JobResult> fake_result(const PreparedJob& job, uint64_t n, uint64_t lat,
                                       uint64_t runtime_ns, uint64_t spread = 1)
{
    auto r = std::make_unique<JobResult>();
    r->job = &job;
    r->tid = 4242;
    for (uint64_t i = 0; i < n; i++)
        r->dir[kRead].lat.add(lat + i % 1000 * spread);
    r->dir[kRead].runtime_ns = runtime_ns;
    r->epoch_ns = 1000000000;
    r->start_ns = r->epoch_ns + 5000000;
    r->end_ns = r->start_ns + runtime_ns;
    r->slot_ns = kSlotNs;
    size_t slots = (r->end_ns - r->epoch_ns) / kSlotNs + 1;
    r->slots[kRead].assign(slots, uint32_t(n / slots));
    r->slots[kWrite].assign(slots, 0);
    r->usr_s = 0.25;
    r->sys_s = 0.5;
    return r;
}

} // namespace

TEST_CASE("the JSON report has fio's shape", "[bench]")
{
    PreparedJob job;
    job.spec = must_parse({"--name=jsontest", "--filename=null://", "--rw=randread",
                           "--bs=4k", "--iodepth=8"}).jobs[0];
    auto r = fake_result(job, 200000, 20000, 2000000000);
    std::vector<const JobResult*> all{r.get()};
    auto entries = make_report_entries(all);
    Json doc = parse_json(report_json(entries, false, 1700000000));
    CHECK(doc["fio version"].str == "coblk-bench-0.1");
    const Json& j = doc["jobs"][0];
    CHECK(j["jobname"].str == "jsontest");
    CHECK(j["error"].num == 0);
    CHECK(j["job options"]["bs"].str == "4k");
    const Json& rd = j["read"];
    CHECK(rd["iops"].num == Approx(100000.0));          // 200000 in 2 s
    CHECK(rd["bw"].num == Approx(400000.0).epsilon(1e-3));  // KiB/s
    CHECK(rd["bw_bytes"].num == Approx(409600000.0).epsilon(1e-6));
    CHECK(rd["io_bytes"].num == 200000.0 * 4096);
    CHECK(rd["runtime"].num == 2000);
    CHECK(rd["total_ios"].num == 200000);
    const Json& clat = rd["clat_ns"];
    CHECK(clat["N"].num == 200000);
    CHECK(clat["min"].num == 20000);
    CHECK(clat["max"].num == 20999);
    CHECK(clat["mean"].num == Approx(20499.5));
    for (const char* p : {"1.000000", "50.000000", "99.000000", "99.500000", "99.990000"})
        CHECK(clat["percentile"].has(p));
    CHECK(clat["percentile"]["99.000000"].num ==
          double(r->dir[kRead].lat.percentile(99)));
    CHECK(clat["percentile"]["50.000000"].num == Approx(20500).epsilon(0.016));
    CHECK(rd["lat_ns"]["N"].num == 200000);
    CHECK(rd["iops_samples"].num > 0);
    CHECK(j["write"]["total_ios"].num == 0);
    CHECK_FALSE(j["write"]["clat_ns"].has("percentile"));
    CHECK(j["trim"]["iops"].num == 0);
    CHECK(j["usr_cpu"].num == Approx(12.5).epsilon(0.01));
    CHECK(j["sys_cpu"].num == Approx(25.0).epsilon(0.01));

    Json plus = parse_json(report_json(entries, true, 1700000000));
    const Json& bins = plus["jobs"][0]["read"]["clat_ns"]["bins"];
    double total = 0;
    for (const auto& kv : bins.obj)
        total += kv.second.num;
    CHECK(total == 200000);

    CHECK(json_string("a\"b\\c\nd\x01") == "\"a\\\"b\\\\c\\nd\\u0001\"");
}

TEST_CASE("group_reporting merges clones; the normal report has fio's layout", "[bench]")
{
    PreparedJob job;
    job.spec = must_parse({"--name=grp", "--filename=null://", "--numjobs=2",
                           "--group_reporting"}).jobs[0];
    // 30 us to 130 us: fio prints such latencies in usec.
    auto a = fake_result(job, 1000, 30000, 1000000000, 100);
    auto b = fake_result(job, 3000, 30000, 1000000000, 100);
    std::vector<const JobResult*> all{a.get(), b.get()};
    auto entries = make_report_entries(all);
    REQUIRE(entries.size() == 1);
    CHECK(entries[0].jobs == 2);
    CHECK(entries[0].dir[kRead].lat.count() == 4000);

    std::string text = report_normal(entries, all, 1700000000);
    CHECK_THAT(text, Catch::Contains("grp: (groupid=0, jobs=2): err= 0: pid=4242"));
    CHECK_THAT(text, Catch::Contains("  read: IOPS=4000, BW=15.6MiB/s (16.4MB/s)"));
    CHECK_THAT(text, Catch::Contains("clat percentiles (usec):"));
    // fio's table: "     |  1.00th=[   30],  5.00th=[   30], 10.00th=[ ...], 20.00th=[...],"
    std::regex row(R"(\n     \|(  1\.00th=\[ *\d+\],  5\.00th=\[ *\d+\], 10\.00th=\[ *\d+\], 20\.00th=\[ *\d+\],)\n)");
    CHECK(std::regex_search(text, row));
    std::regex last(R"(\n     \| 99\.99th=\[ *\d+\]\n)");
    CHECK(std::regex_search(text, last));
    CHECK_THAT(text, Catch::Contains("Run status group 0 (all jobs):"));
    CHECK_THAT(text, Catch::Contains("   READ: bw=15.6MiB/s (16.4MB/s)"));
    CHECK_THAT(text, Catch::Contains("run=1000-1000msec"));
}

TEST_CASE("IOPS over time adds jobs slot by slot", "[bench]")
{
    PreparedJob job;
    job.spec = must_parse({"--filename=null://"}).jobs[0];
    auto a = fake_result(job, 0, 1, 1000000000);
    auto b = fake_result(job, 0, 1, 1000000000);
    for (auto* r : {a.get(), b.get()}) {
        r->start_ns = r->epoch_ns;
        r->end_ns = r->epoch_ns + 10 * kSlotNs;
        r->slots[kRead].assign(10, 100);  // 1000 IOPS each
    }
    auto pts = iops_over_time({a.get(), b.get()});
    REQUIRE(pts.size() == 10);
    for (const auto& p : pts)
        CHECK(p.iops[kRead] == Approx(2000.0));
    CHECK(pts[0].t_s == Approx(0.05));
    std::string svg = plot_svg({a.get(), b.get()}, "t <&> \"q\"");
    CHECK_THAT(svg, Catch::StartsWith("<?xml") && Catch::EndsWith("</svg>\n"));
    CHECK_THAT(svg, Catch::Contains("t &lt;&amp;&gt; &quot;q&quot;"));
}

namespace {

// Runs one clone of a job given as command-line arguments, after the
// target checks, on this thread.
std::unique_ptr<JobResult> run_one(const std::vector<std::string>& args, PreparedJob& keep)
{
    RunConfig cfg = must_parse(args);
    auto loop = Loop::create();
    REQUIRE(loop);
    std::vector<std::string> notes;
    auto jobs = sync_wait(**loop, prepare_jobs(**loop, cfg, notes));
    if (!jobs)
        FAIL(jobs.error().message);
    keep = jobs->at(0);
    auto out = std::make_unique<JobResult>();
    JobProgress progress;
    run_job(keep, 0, 0, progress, *out);
    return out;
}

} // namespace

TEST_CASE("a job runs on null:// and stops at number_ios", "[bench]")
{
    PreparedJob job;
    auto r = run_one({"--name=n", "--filename=null://", "--rw=randrw", "--rwmixread=75",
                      "--iodepth=4", "--number_ios=20000"}, job);
    CHECK(r->error == 0);
    uint64_t reads = r->dir[kRead].lat.count(), writes = r->dir[kWrite].lat.count();
    CHECK(reads + writes == 20000);
    CHECK(reads > 14000);   // 75% of 20000, give or take
    CHECK(reads < 16000);
    CHECK(r->end_ns >= r->start_ns);
}

TEST_CASE("a job stops after size bytes, and time_based jobs after runtime", "[bench]")
{
    PreparedJob job;
    auto r = run_one({"--filename=null://?size=1M", "--rw=read", "--bs=4k"}, job);
    CHECK(r->error == 0);
    CHECK(r->dir[kRead].lat.count() == 256);
    auto t = run_one({"--filename=null://?size=1M", "--rw=randread", "--bs=4k", "--iodepth=2",
                      "--runtime=200ms", "--time_based"}, job);
    CHECK(t->error == 0);
    CHECK(t->dir[kRead].lat.count() > 256);
    uint64_t took = t->end_ns - t->start_ns;
    CHECK(took >= 200000000ull);
    CHECK(took < 2000000000ull);
}

TEST_CASE("busy_poll: the job's loop polls while requests are in flight, and the data is right",
          "[bench]")
{
    test::ScratchDir dir;
    std::string path = dir.file("img");
    {
        std::vector<unsigned char> zeros(1 << 20, 0);
        test::write_file(path, zeros.data(), zeros.size());
    }
    PreparedJob job;
    // Each job writes every block once (then reads it back verified): in
    // the write phase the loop waits on io_uring for every request, and
    // polls instead with busy_poll.
    auto polled = run_one({"--name=p", "--filename=" + path, "--rw=randwrite", "--bs=4k",
                           "--iodepth=4", "--verify=crc32c", "--busy_poll"}, job);
    CHECK(polled->error == 0);
    CHECK(polled->dir[kWrite].lat.count() == 256);
    CHECK(polled->polls > 0);
    auto slept = run_one({"--name=s", "--filename=" + path, "--rw=randwrite", "--bs=4k",
                          "--iodepth=4", "--verify=crc32c"}, job);
    CHECK(slept->error == 0);
    CHECK(slept->dir[kWrite].lat.count() == 256);
    CHECK(slept->polls == 0);
}

TEST_CASE("verify=crc32c writes a region, reads it back and catches corruption", "[bench]")
{
    PreparedJob job;
    auto w = run_one({"--filename=memory://bench-verify?size=4M", "--rw=randwrite",
                      "--bs=4k", "--iodepth=8", "--verify=crc32c"}, job);
    CHECK(w->error == 0);
    CHECK(w->dir[kWrite].lat.count() == 1024);
    CHECK(w->dir[kRead].lat.count() == 1024);  // the verify phase read every block back
    auto r = run_one({"--filename=memory://bench-verify?size=4M", "--rw=randread",
                      "--bs=4k", "--iodepth=4", "--verify=crc32c"}, job);
    CHECK(r->error == 0);
    CHECK(r->dir[kRead].lat.count() == 1024);
    // A region never written with headers fails, naming the offset.
    auto z = run_one({"--filename=memory://bench-verify-empty?size=1M", "--rw=read",
                      "--bs=4k", "--verify=crc32c"}, job);
    CHECK(z->error == EILSEQ);
    CHECK_THAT(z->error_msg, Catch::Contains("verify error at offset 0"));
}
