// framecast chat HOST:PORT --name NAME: a member of the tutorial series' chat room. The first
// frame sent is the username, each later one a message; what arrives comes in pairs (the
// sender's username frame, then the message frame) and is shown as "bob > hi".
#include <atomic>
#include <cerrno>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "cli.hpp"
#include "client_security.hpp"
#include "cert_refusal.hpp"
#include "ws_target.hpp"
#include "client_options.hpp"
#include "framecast/io/client.hpp"
#include "framecast/io/line_splitter.hpp"

namespace framecast::app {
namespace {

using namespace asio::experimental::awaitable_operators;

struct chat_config {
    std::string target;
    std::string name;
    std::string room;  // --room: a room on a `serve --channels` server
    std::size_t max_name = 64;
    double linger = 0.5;
    double connect_timeout = 10;
    codec_flags codec;
    int verbosity = 0;
};

// Writes all of `data`, waiting out EAGAIN (a terminal shares its non-blocking flag with stdin,
// which Asio makes non-blocking).
void write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n >= 0) {
            data.remove_prefix(static_cast<std::size_t>(n));
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            pollfd pfd{fd, POLLOUT, 0};
            ::poll(&pfd, 1, 1000);
        } else if (errno != EINTR) {
            return;  // stdout gone: nothing useful left to do with the output
        }
    }
}

// Where the conversation is shown: plain lines (not a terminal), or a terminal where the user
// is typing a line behind the prompt. An incoming message clears that row, prints the message,
// and redraws the prompt with what was typed so far, so the line being typed is never torn.
class chat_screen {
public:
    chat_screen(bool interactive, std::string prompt)
        : interactive_(interactive), prompt_(std::move(prompt)) {}

    void message(std::string_view name, std::string_view text) {
        std::string out = interactive_ ? clear_typed() : "";
        out += escape_controls(name);
        out += " > ";
        out += escape_controls(text);
        out += '\n';
        if (interactive_) out += prompt_ + escape_controls(line_);
        write_all(STDOUT_FILENO, out);
    }

    // A line of our own (e.g. "connection closed by the server"), on a terminal only; logs
    // say the same on stderr otherwise.
    void notice(std::string_view text) {
        if (!interactive_) return;
        write_all(STDOUT_FILENO, clear_typed() + std::string(text) + "\n" + prompt_ + escape_controls(line_));
    }

    // A line of our own in the conversation (the end of the history): on a terminal among
    // the messages; otherwise logged on stderr, so stdout stays "name > message" lines only.
    void marker(std::string_view text) {
        if (interactive_) return notice(text);
        spdlog::info("{}", text);
    }

    void show_prompt() { write_all(STDOUT_FILENO, prompt_); }

    // Clears the prompt row for good (leaving).
    void finish() {
        if (interactive_ && !finished_) write_all(STDOUT_FILENO, clear_typed());
        finished_ = true;
    }

    // The line editor: what the terminal sends, a byte at a time. Returns a line when Enter
    // completes one, "\x04" when the user leaves with Ctrl-D on an empty line.
    std::optional<std::string> key(char ch) {
        auto c = static_cast<unsigned char>(ch);
        if (escape_ > 0) {  // swallow escape sequences (arrow keys, ...): ESC [ params final
            if (escape_ == 1) {
                escape_ = c == '[' || c == 'O' ? 2 : 0;
            } else if (c >= 0x40 && c <= 0x7e) {
                escape_ = 0;
            }
            return std::nullopt;
        }
        switch (c) {
            case '\r':
            case '\n': {
                std::string line = std::move(line_);
                line_.clear();
                write_all(STDOUT_FILENO, "\n");  // the typed line stays: "alice > hello"
                return line;
            }
            case 0x04:  // Ctrl-D
                if (line_.empty()) return std::string("\x04");
                return std::nullopt;
            case 0x7f:
            case 0x08:  // backspace: one code point
                while (!line_.empty() && (static_cast<unsigned char>(line_.back()) & 0xc0) == 0x80) {
                    line_.pop_back();
                }
                if (!line_.empty()) line_.pop_back();
                redraw();
                return std::nullopt;
            case 0x15:  // Ctrl-U
                line_.clear();
                redraw();
                return std::nullopt;
            case 0x1b:
                escape_ = 1;
                return std::nullopt;
            default:
                if (c < 0x20) return std::nullopt;
                line_ += ch;
                write_all(STDOUT_FILENO, std::string_view(&ch, 1));
                return std::nullopt;
        }
    }

private:
    void redraw() { write_all(STDOUT_FILENO, clear_typed() + prompt_ + escape_controls(line_)); }

    // Moves to the start of the prompt and clears from there: the prompt and the typed line may
    // wrap over several rows (the cursor is on the last; a full row keeps it at its end).
    std::string clear_typed() const {
        const std::size_t cols = terminal_columns();
        const std::size_t width = display_width(prompt_) + display_width(escape_controls(line_));
        const std::size_t up = width == 0 ? 0 : (width - 1) / cols;
        if (up == 0) return "\r\x1b[K";
        return "\r\x1b[" + std::to_string(up) + "A\x1b[J";
    }

    static std::size_t terminal_columns() {
        winsize ws{};
        if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
        return 80;
    }

    // Code points: one column each (wide characters are rare in names and chat lines).
    static std::size_t display_width(std::string_view s) {
        std::size_t n = 0;
        for (unsigned char c : s) n += (c & 0xc0) != 0x80;
        return n;
    }

    bool interactive_;
    std::string prompt_;
    std::string line_;
    int escape_ = 0;
    bool finished_ = false;
};

// Puts the terminal in non-canonical, no-echo mode (signals still work) and gives it back as
// it was, descriptor flags included, however the program ends.
class terminal_mode {
public:
    terminal_mode() {
        if (::tcgetattr(STDIN_FILENO, &saved_) != 0) return;
        flags_ = ::fcntl(STDIN_FILENO, F_GETFL);
        termios raw = saved_;
        raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO | IEXTEN));
        raw.c_iflag &= static_cast<tcflag_t>(~(IXON | ICRNL));
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        active_ = ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) == 0;
    }
    ~terminal_mode() { restore(); }
    terminal_mode(const terminal_mode&) = delete;
    terminal_mode& operator=(const terminal_mode&) = delete;

    void restore() {
        if (!active_) return;
        active_ = false;
        ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_);
        if (flags_ != -1) ::fcntl(STDIN_FILENO, F_SETFL, flags_);
    }

private:
    termios saved_{};
    int flags_ = -1;
    bool active_ = false;
};

// What arrives: frames in pairs, the sender's username then the message. In a --room the
// first frame is the channel "chat.ROOM.NAME" (shown as NAME), or a server notice ("$sys.").
// What arrives within a moment of joining is taken as the server's --history replay: a marker
// line says where it ends.
class pair_reader final : public io::frame_handler {
public:
    pair_reader(chat_screen& screen, std::string room_prefix, std::size_t max_name)
        : screen_(screen), room_prefix_(std::move(room_prefix)), max_name_(max_name) {}

    bool on_frame(std::string_view payload) override {
        if (!have_name_) {
            name_.assign(payload);
            have_name_ = true;
            if (room_prefix_.empty()) check_pairing(payload);
            return true;
        }
        have_name_ = false;
        if (room_prefix_.empty()) {
            ++pairs_;
            screen_.message(name_, payload);
        } else if (name_.starts_with(room_prefix_)) {
            screen_.message(std::string_view(name_).substr(room_prefix_.size()), payload);
        } else if (name_ == "$sys.error") {
            spdlog::error("the server refused: {}", escape_controls(payload, true));
            screen_.notice("the server refused: " + escape_controls(payload));
        } else if (name_ == "$sys.ok") {
            spdlog::info("in the room ({})", escape_controls(payload, true));
        }
        return true;
    }

    // A moment after joining, or at the user's first key if that comes sooner: what arrived
    // until now was the server's --history replay (it comes at once on joining); say where it
    // ends. Once only: a message that arrives after the user started typing is a live one,
    // however soon after joining (the marker used to land below such messages on a slow machine).
    void join_settled() {
        if (settled_) return;
        settled_ = true;
        if (pairs_ == 0) return;
        screen_.marker("--- " + std::to_string(pairs_) + " earlier message" +
                       (pairs_ == 1 ? "" : "s") + " (history); new messages follow ---");
    }

private:
    // A streaming server's messages are not pairs: say so once, where it can be seen.
    void check_pairing(std::string_view name) {
        if (warned_) return;
        const bool streaming = name == "Welcome to the server!" || name.rfind("The time is ", 0) == 0;
        if (!streaming && name.size() <= max_name_) return;
        warned_ = true;
        const std::string text =
            "warning: the server sent '" + escape_controls(name.substr(0, 60)) +
            "' where a username belongs: it does not look like a chat room (framecast serve "
            "--chat); messages will be shown paired wrongly";
        spdlog::warn("{}", text);
        screen_.notice(text);
    }

    chat_screen& screen_;
    std::string room_prefix_;
    std::size_t max_name_;
    std::string name_;
    bool have_name_ = false;
    bool warned_ = false;
    bool settled_ = false;
    std::uint64_t pairs_ = 0;
};

// --room: the room's channels. A message is published to chat.ROOM.NAME, the room is joined
// by subscribing to chat.ROOM.* (docs/channels.md, "Chat rooms").
std::string room_prefix(const chat_config& cfg) {
    return cfg.room.empty() ? std::string() : "chat." + cfg.room + ".";
}

// Empty when `token` can be one token of a channel name; else what is wrong with it.
std::string check_token(std::string_view what, std::string_view token) {
    if (token.empty()) return std::string(what) + " must not be empty";
    for (unsigned char c : token) {
        if (c <= 0x20 || c == 0x7f || c == '.' || c == '*' || c == '>') {
            return std::string(what) + " '" + escape_controls(token, true) +
                   "' cannot name a channel token: no spaces, control characters, '.', '*' or '>'";
        }
    }
    if (token.front() == '$') return std::string(what) + " must not start with '$'";
    return {};
}

// Non-interactive input: a thread queues each line and says when input has ended.
struct input_progress {
    std::string before;  // framed, queued before each message (--room: the PUB command)
    std::atomic<bool> ended{false};
    std::atomic<std::uint64_t> queued_bytes{0};  // encoded bytes handed to the send queue
};

// The frames a message line becomes, or an error sentence when it cannot be sent.
std::string check_line(std::string_view line, const codec_options& opts) {
    if (line.size() > opts.max_message) {
        return "not sent: the line is " + std::to_string(line.size()) +
               " bytes, more than --max-message " + std::to_string(opts.max_message);
    }
    return {};
}

// One message: with --room after its PUB command frame (`before`), nothing queued on error.
error_code push_message(io::send_queue& queue, const std::string& before, std::string_view line) {
    std::string frames = before;
    if (auto ec = append_frame(frames, line, queue.options())) return ec;
    queue.push_encoded(frames);
    return {};
}

// Reads standard input (a pipe or a file) line by line on its own thread: lines are sent as
// they come, empty lines skipped (the tutorial's client sends none), a line longer than the
// largest message reported and skipped, "/quit" ends the input.
void read_lines(std::shared_ptr<io::send_queue> queue, std::shared_ptr<input_progress> progress) {
    const auto& opts = queue->options();
    io::line_splitter lines(opts.max_message);
    char buf[64 * 1024];
    // Sends one line; false at "/quit".
    auto take = [&](std::string_view line) {
        if (line.empty()) return true;
        if (line == "/quit") return false;
        queue->wait_for_room();
        if (auto ec = push_message(*queue, progress->before, line)) {
            spdlog::error("not sent: {}", ec.message());
            return true;
        }
        progress->queued_bytes += progress->before.size() + opts.header_size + line.size();
        return true;
    };
    // Sends the splitter's lines until it needs more input; false at "/quit".
    auto take_lines = [&](auto&& next_event) {
        for (;;) {
            switch (next_event()) {
                case io::line_splitter::event::need_more:
                    return true;
                case io::line_splitter::event::too_long:
                    spdlog::error("not sent: {} (--max-message)", lines.too_long_message());
                    lines.skip_line();
                    break;
                case io::line_splitter::event::line:
                    if (!take(lines.line())) return false;
            }
        }
    };
    for (;;) {
        ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            take_lines([&] { return lines.finish(); });
            break;
        }
        std::string_view in(buf, static_cast<std::size_t>(n));
        if (!take_lines([&] { return lines.next(in); })) break;
    }
    progress->ended = true;
}

struct session_state {
    bool leaving = false;  // the user asked to leave, or input ended: a close is expected
};

// Interactive: the terminal, read on the io_context's thread so all output is in one place.
asio::awaitable<void> type_lines(chat_screen& screen, pair_reader& pairs, io::send_queue& queue,
                                 const std::string& before, session_state& state) {
    asio::posix::stream_descriptor in(co_await asio::this_coro::executor, ::dup(STDIN_FILENO));
    char buf[256];
    for (;;) {
        auto [ec, n] = co_await in.async_read_some(asio::buffer(buf), use_nothrow);
        // Cancelled: the connection ended first, which is not the user leaving (the caller
        // reports it; setting `leaving` here made a server's close look like a clean exit 0).
        if (ec == asio::error::operation_aborted) co_return;
        if (ec) break;  // the terminal went away
        pairs.join_settled();  // what arrives from now on is live, not the history replay
        bool leave = false;
        for (std::size_t i = 0; i < n && !leave; ++i) {
            auto line = screen.key(buf[i]);
            if (!line) continue;
            if (*line == "\x04" || *line == "/quit") {
                leave = true;
            } else if (auto problem = check_line(*line, queue.options()); !problem.empty()) {
                screen.notice(problem);
            } else if (!line->empty()) {
                if (auto e = push_message(queue, before, *line)) {
                    screen.notice("not sent: " + e.message());
                }
            }
            if (!leave) screen.show_prompt();
        }
        if (leave) break;
    }
    state.leaving = true;
    screen.finish();
    queue.close();  // the writer sends what is queued, shuts down its side and returns
    co_await io::wait_forever();
}

// Non-interactive: once input has ended and all of it is written, linger for replies, then
// close the sending side.
asio::awaitable<void> finish_input(const input_progress& progress, io::frame_writer& writer,
                                   io::send_queue& queue, double linger, session_state& state) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    for (;;) {
        if (progress.ended && writer.bytes_written() >= progress.queued_bytes) break;
        timer.expires_after(std::chrono::milliseconds(10));
        auto [ec] = co_await timer.async_wait(use_nothrow);
        if (ec) co_return;  // cancelled: the connection ended first, not our input
    }
    timer.expires_after(to_duration(linger));
    auto [ec] = co_await timer.async_wait(use_nothrow);
    if (ec) co_return;
    state.leaving = true;
    queue.close();
    co_await io::wait_forever();
}

asio::awaitable<exit_code> run_chat(const chat_config& cfg, bool interactive, chat_screen& screen) {
    auto ex = co_await asio::this_coro::executor;
    const endpoint target = parse_endpoint(cfg.target);
    const codec_options opts = cfg.codec.options();

    io::client_stream socket(ex);
    std::string what;
    if (auto ec = co_await connect_to(socket, target, to_duration(cfg.connect_timeout),
                                             what, opts)) {
        spdlog::error("{}", what);
        co_return connect_exit_code(ec);
    }

    auto queue = std::make_shared<io::send_queue>(opts);
    auto progress = std::make_shared<input_progress>();
    // The tutorial's room: the username first. A --room: subscribe to it.
    const std::string prefix = room_prefix(cfg);
    const std::string first = prefix.empty() ? cfg.name : "SUB " + prefix + "*";
    if (!prefix.empty()) append_frame(progress->before, "PUB " + prefix + cfg.name, opts);
    if (auto ec = queue->push(first)) {
        spdlog::error("cannot send the username: {}", ec.message());
        co_return exit_code::usage;
    }
    progress->queued_bytes = opts.header_size + first.size();
    io::frame_writer writer(ex, queue);

    session_state state;
    decoder dec(opts, decode_mode::whole);
    std::vector<char> buffer(64 * 1024);
    pair_reader chat_pairs(screen, prefix, cfg.max_name);
    cert_refusal_watch pairs(chat_pairs);
    // The protocol has no "welcome": a server that refuses the name closes at once, so the
    // name counts as accepted once the connection has stayed open a moment.
    bool joined = false;
    asio::steady_timer join_timer(ex, std::chrono::milliseconds(250));
    join_timer.async_wait([&, name = target.to_string()](error_code ec) {
        if (ec) return;  // cancelled: run_chat is over
        joined = true;
        chat_pairs.join_settled();
        spdlog::info("joined {}{}{} as {}", name, prefix.empty() ? "" : " room ",
                     escape_controls(cfg.room), escape_controls(cfg.name));
    });

    auto send = [&]() -> asio::awaitable<error_code> { co_return co_await writer.run(socket); };
    std::variant<io::read_result, error_code, std::monostate> outcome;
    if (interactive) {
        screen.show_prompt();
        outcome = co_await (io::read_frames(socket, dec, buffer, pairs) || send() ||
                            type_lines(screen, chat_pairs, *queue, progress->before, state));
    } else {
        std::thread(read_lines, queue, progress).detach();  // may block on stdin forever
        outcome = co_await (io::read_frames(socket, dec, buffer, pairs) || send() ||
                            finish_input(*progress, writer, *queue, cfg.linger, state));
    }
    join_timer.cancel();
    screen.finish();

    if (auto* sent = std::get_if<error_code>(&outcome)) {
        if (!*sent) co_return exit_code::ok;  // everything sent, our side closed: we left
        spdlog::error("{}: sending failed: {}", target.to_string(), sent->message());
        co_return exit_code::failure;
    }
    if (auto* res = std::get_if<io::read_result>(&outcome)) {
        if (!pairs.refused().empty()) co_return pairs.report(target.to_string());
        if (res->ec) {
            if (!joined && res->ec == asio::error::connection_reset) {
                spdlog::error("{}: connection reset by the server right after the username "
                              "'{}': it refused the name, its log says why",
                              target.to_string(), escape_controls(cfg.name));
                co_return exit_code::failure;
            }
            spdlog::error("{}: {}", target.to_string(), res->message);
            co_return exit_code_for(res->ec);
        }
        if (state.leaving) co_return exit_code::ok;
        if (!joined) {
            spdlog::error("{}: connection closed by the server right after the username '{}': "
                          "it refused the name (taken, with --unique-names; too long; ...), "
                          "its log says why",
                          target.to_string(), escape_controls(cfg.name));
            co_return exit_code::failure;
        }
        spdlog::error("{}: connection closed by the server", target.to_string());
        co_return exit_code::failure;
    }
    co_return exit_code::ok;
}

}  // namespace

command_runner register_chat(CLI::App& app) {
    auto cfg = std::make_shared<chat_config>();
    auto* cmd = app.add_subcommand(
        "chat",
        "Join a chat room (framecast serve --chat, or the tutorial series' chat server): send "
        "--name, then each line typed (or read from standard input) as a message; show what "
        "others say as 'name > message'");
    cmd->add_option("target", cfg->target, "Where the room is: HOST:PORT or [IPv6]:PORT")
        ->required()
        ->check(endpoint_validator());
    cmd->add_option("--name", cfg->name,
                    "Username: non-empty, valid UTF-8, at most --max-name bytes")
        ->required();
    cmd->add_option("--max-name", cfg->max_name, "Longest username in bytes (the server's rule)")
        ->default_val(cfg->max_name);
    cmd->add_option("--room", cfg->room,
                    "Join room ROOM on a 'serve --channels' server (one server, many rooms): "
                    "subscribes to chat.ROOM.* and publishes each message to chat.ROOM.NAME "
                    "(docs/channels.md). ROOM and the name are then channel tokens: no spaces, "
                    "'.', '*' or '>'");
    add_seconds_option(*cmd, "--linger", cfg->linger,
                       "Not a terminal: after the last input line is sent, keep showing what "
                       "arrives for SECONDS before leaving");
    add_seconds_option(*cmd, "--connect-timeout", cfg->connect_timeout,
                       "Give up connecting after SECONDS");
    add_codec_options(*cmd, cfg->codec, true);
    add_security_options(*cmd);
    add_verbosity_flags(*cmd, cfg->verbosity);

    return [cfg] {
        const bool interactive = ::isatty(STDIN_FILENO) != 0;
        // On a terminal, log lines would tear the line being typed: only problems are logged.
        setup_logging(interactive && cfg->verbosity == 0 ? -1 : cfg->verbosity);
        const auto& name = cfg->name;
        std::string problem;
        if (name.empty()) {
            problem = "--name must not be empty";
        } else if (!count_code_points(name)) {
            problem = "--name is not valid UTF-8: " + escape_bytes(name);
        } else if (name.size() > cfg->max_name) {
            problem = "--name is " + std::to_string(name.size()) + " bytes, more than --max-name " +
                      std::to_string(cfg->max_name);
        } else if (name.size() > cfg->codec.max_message) {
            problem = "--name is longer than --max-message";
        } else if (!cfg->room.empty()) {
            problem = check_token("--name", name);
            if (problem.empty()) problem = check_token("--room", cfg->room);
        }
        if (!problem.empty()) {
            spdlog::error("{}", problem);
            return exit_code::usage;
        }

        chat_screen screen(interactive, escape_controls(name) + " > ");
        std::optional<terminal_mode> terminal;
        if (interactive) terminal.emplace();
        auto code = run_io(
            [&](asio::io_context&) -> asio::awaitable<exit_code> {
                co_return co_await run_chat(*cfg, interactive, screen);
            },
            [&] {
                screen.finish();
                if (terminal) terminal->restore();
            });
        return code;
    };
}

}  // namespace framecast::app
