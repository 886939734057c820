// A minimal file logger provider (the logging packages served here have none): one line
// per message, appended to <log dir>/copper-agent.<node>.log, flushed per line.
using Microsoft.Extensions.Logging;

namespace Copper.Agent;

internal sealed class FileLoggerProvider : ILoggerProvider
{
    private readonly StreamWriter _writer;
    private readonly Lock _gate = new();

    public FileLoggerProvider(string file)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(file)!);
        _writer = new StreamWriter(new FileStream(file, FileMode.Append, FileAccess.Write, FileShare.ReadWrite)) { AutoFlush = true };
    }

    public ILogger CreateLogger(string categoryName) => new FileLogger(this, categoryName);

    public void Dispose()
    {
        lock (_gate)
        {
            _writer.Dispose();
        }
    }

    private void Write(string line)
    {
        lock (_gate)
        {
            _writer.WriteLine(line);
        }
    }

    private sealed class FileLogger(FileLoggerProvider owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }
            string line = $"{DateTime.UtcNow:O} {logLevel} {category}: {formatter(state, exception)}";
            if (exception != null)
            {
                line += " " + exception;
            }
            owner.Write(line);
        }
    }
}
