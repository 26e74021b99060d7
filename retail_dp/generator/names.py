"""Vocabularies for the sample data: names, countries (with the DataOS example's mix) and products."""

FIRST_NAMES = (
    "Ana", "Lucia", "Maria", "Sofia", "Elena", "Carmen", "Laura", "Marta", "Paula", "Sara",
    "James", "John", "Robert", "Michael", "David", "William", "Richard", "Thomas", "Daniel", "Mark",
    "Emma", "Olivia", "Ava", "Mia", "Isabella", "Amelia", "Harper", "Ella", "Grace", "Chloe",
    "Pablo", "Javier", "Carlos", "Miguel", "Diego", "Lukas", "Jonas", "Priya", "Arjun", "Thabo",
    "Lerato", "Sipho", "Noah", "Liam", "Lucas", "Mateo", "Hannah", "Lea", "Aisha", "Wei",
)
LAST_NAMES = (
    "Garcia", "Martinez", "Lopez", "Sanchez", "Perez", "Gomez", "Fernandez", "Ruiz", "Diaz", "Moreno",
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Taylor", "Clark",
    "Tremblay", "Roy", "Gagnon", "Cote", "Bouchard", "Muller", "Schmidt", "Schneider", "Fischer", "Weber",
    "Sharma", "Patel", "Singh", "Kumar", "Gupta", "Nkosi", "Dlamini", "Khumalo", "Naidoo", "Botha",
    "Hernandez", "Gonzalez", "Rodriguez", "Ramirez", "Torres", "Walker", "Young", "King", "Wright", "Hill",
)
# ISO 3166-1 alpha-2 codes, weighted like the customer mix of the DataOS example.
COUNTRIES = (
    ("ES", 0.49), ("ZA", 0.15), ("CA", 0.12), ("AU", 0.07),
    ("IN", 0.065), ("DE", 0.05), ("US", 0.046), ("MX", 0.009),
)
EDUCATION = ("Basic", "2n Cycle", "Graduation", "Master", "PhD")
EDUCATION_WEIGHTS = (0.03, 0.09, 0.50, 0.16, 0.22)
MARITAL_STATUS = ("Single", "Together", "Married", "Divorced", "Widow")
MARITAL_WEIGHTS = (0.22, 0.26, 0.39, 0.10, 0.03)
EMAIL_DOMAINS = ("example.com", "mail.example", "post.example", "inbox.example")
PRODUCT_WORDS = {
    "Wines": ("Rioja Crianza", "Albarino", "Malbec Reserva", "Chardonnay", "Cava Brut",
              "Pinot Noir", "Shiraz", "Tempranillo Joven", "Riesling", "Port Tawny"),
    "Meats": ("Iberico Ham", "Chorizo", "Beef Sirloin", "Lamb Chops", "Pork Ribs",
              "Chicken Thighs", "Salami", "Duck Breast", "Veal Escalope", "Burger Patties"),
    "Fish": ("Salmon Fillet", "Cod Loin", "Tuna Steak", "Prawns", "Sardines",
             "Hake", "Mussels", "Sea Bass", "Anchovies", "Octopus"),
    "Sweets": ("Dark Chocolate", "Turron", "Churros Mix", "Caramel Flan", "Almond Biscuits",
               "Honey Jar", "Marzipan", "Fudge", "Gummy Bears", "Lemon Tart"),
    "Fruits": ("Oranges", "Apples", "Bananas", "Strawberries", "Grapes",
               "Pears", "Mangoes", "Kiwis", "Cherries", "Peaches"),
    "Gold": ("Gold Ring", "Gold Chain", "Gold Earrings", "Gold Bracelet", "Gold Pendant",
             "Gold Coin", "Gold Watch", "Gold Cufflinks", "Gold Brooch", "Gold Anklet"),
}
