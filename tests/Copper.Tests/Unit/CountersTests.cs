// What counts as a change of an agent's counters for the job's reports (Counters.ActivityKey):
// the job's requests and what they cause do; someone asking the agent about itself (a
// connection, a ping or `copper stats`) does not, though the full counters still show it.
using System.Text.Json;
using Copper.Agent;
using Xunit;

namespace Copper.Tests.Unit;

public class CountersTests
{
    private static long Num(byte[] json, string name)
    {
        using JsonDocument doc = JsonDocument.Parse(json);
        return doc.RootElement.GetProperty(name).GetInt64();
    }

    [Fact]
    public void AskingTheAgentAboutItselfIsNoChangeButTheJobsRequestsAre()
    {
        var c = new Counters();
        byte[] key = c.ActivityKey(3);

        c.Connection();
        c.Control();
        c.Control();
        Assert.Equal(key, c.ActivityKey(3));
        byte[] full = c.ToJson(3);
        Assert.Equal(2, Num(full, "requests"));           // control requests are requests too
        Assert.Equal(2, Num(full, "control_requests"));
        Assert.Equal(1, Num(full, "connections"));

        c.Request();
        Assert.NotEqual(key, c.ActivityKey(3));
        Assert.Equal(3, Num(c.ToJson(3), "requests"));
        key = c.ActivityKey(3);
        c.Hit();
        Assert.NotEqual(key, c.ActivityKey(3));
        key = c.ActivityKey(3);
        c.Mirrored(4096);
        Assert.NotEqual(key, c.ActivityKey(3));
    }
}
