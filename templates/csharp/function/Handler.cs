namespace Function
{
    public class FunctionHandler
    {
        public string Handle(string input)
        {
            var name = string.IsNullOrWhiteSpace(input) ? "world" : input.Trim();
            return "Hello, " + name + ", from C#!\n";
        }
    }
}
