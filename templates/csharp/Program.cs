// ferrofaas csharp template: serves Function.FunctionHandler over HTTP on
// 127.0.0.1:$PORT (System.Net.HttpListener), in http mode behind the
// watchdog. Not for editing: write the function in function/Handler.cs.
using System;
using System.IO;
using System.Net;
using System.Text;
using System.Threading.Tasks;

public static class Program
{
    public static void Main()
    {
        var port = Environment.GetEnvironmentVariable("PORT") ?? "5000";
        var listener = new HttpListener();
        listener.Prefixes.Add("http://127.0.0.1:" + port + "/");
        listener.Start();
        var handler = new Function.FunctionHandler();
        while (true)
        {
            var ctx = listener.GetContext();
            Task.Run(() => Serve(ctx, handler));
        }
    }

    static void Serve(HttpListenerContext ctx, Function.FunctionHandler handler)
    {
        string input;
        using (var reader = new StreamReader(ctx.Request.InputStream, Encoding.UTF8))
        {
            input = reader.ReadToEnd();
        }
        byte[] output;
        try
        {
            output = Encoding.UTF8.GetBytes(handler.Handle(input) ?? "");
            ctx.Response.StatusCode = 200;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine(e);
            output = Encoding.UTF8.GetBytes("the function raised an exception; see its logs\n");
            ctx.Response.StatusCode = 500;
        }
        ctx.Response.ContentLength64 = output.Length;
        ctx.Response.OutputStream.Write(output, 0, output.Length);
        ctx.Response.OutputStream.Close();
    }
}
